#!/bin/bash
# PID 1 on the guest's root disk (no systemd): runs /mnt/results/command.sh once, records its
# output and exit code on the results share, and powers the VM off.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root TERM=dumb LANG=C.UTF-8 KUBE_LXCFS_IN_VM=1
# Emulation is slow: test helpers stretch their deadlines by this factor.
export KUBE_LXCFS_TEST_SLOWDOWN=6
results=/mnt/results

read -r up _ </proc/uptime
echo "KLX-MARK command $up"
cd /mnt/src 2>/dev/null || cd /
# Output goes to the share, which the host tails live (the serial console is slow).
bash "$results/command.sh" </dev/null >"$results/output.log" 2>&1
rc=$?
echo "$rc" >"$results/exit-code"
read -r up _ </proc/uptime
echo "KLX-MARK done $up rc=$rc"
sync
umount "$results" 2>/dev/null
umount /mnt/src 2>/dev/null
echo o >/proc/sysrq-trigger
# The power-off is asynchronous: wait without touching the disk.
read -r -t 60 _ <>/run/klx-poweroff
