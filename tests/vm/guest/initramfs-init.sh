#!/bin/sh
# PID 1 of the initramfs (static busybox only: every dynamic exec is slow under emulation).
# Loads the modules, mounts the root disk, the pure cgroup2 hierarchy and the 9p shares,
# then hands over to the guest init on the root disk.
export PATH=/bin
mark() {
    up=$(cut -d" " -f1 /proc/uptime 2>/dev/null || cut -d" " -f1 /newroot/proc/uptime)
    echo "KLX-MARK $1 $up"
}

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mark initramfs
while read -r module; do
    insmod "/lib/modules/$module" 2>/dev/null || echo "klx-initramfs: insmod $module failed"
done </lib/modules/modules.list
mark modules

tries=0
while [ ! -b /dev/vda ] && [ "$tries" -lt 500 ]; do
    sleep 0.02
    tries=$((tries + 1))
done
if ! mount -t ext4 -o rw /dev/vda /newroot; then
    echo "klx-initramfs: cannot mount the root disk"
    echo o >/proc/sysrq-trigger
    exec sleep 60
fi

for fs in proc sys dev; do mount --move "/$fs" "/newroot/$fs"; done
mkdir -p /newroot/dev/pts /newroot/dev/shm
mount -t devpts -o gid=5,mode=620,ptmxmode=666 devpts /newroot/dev/pts
mount -t tmpfs -o mode=1777 tmpfs /newroot/dev/shm
mount -t tmpfs -o mode=755 tmpfs /newroot/run
mount -t tmpfs -o mode=1777 tmpfs /newroot/tmp
ln -sf /proc/self/fd /newroot/dev/fd
mkfifo /newroot/run/klx-poweroff

# Pure cgroup v2, like a systemd host booted with the unified hierarchy.
cg=/newroot/sys/fs/cgroup
mount -t cgroup2 -o nsdelegate,memory_recursiveprot cgroup2 "$cg"
for c in $(cat "$cg/cgroup.controllers"); do
    case "$c" in cpu|cpuset|io|memory|pids) echo "+$c" >"$cg/cgroup.subtree_control" ;; esac
done
mkdir -p "$cg/init.scope"
echo 1 >"$cg/init.scope/cgroup.procs"

hostname klx-v2
ip link set lo up 2>/dev/null || ifconfig lo 127.0.0.1 up

for tagfile in /newroot/sys/bus/virtio/drivers/9pnet_virtio/virtio*/mount_tag; do
    [ -r "$tagfile" ] || continue
    tag=$(cat "$tagfile")
    opts=trans=virtio,version=9p2000.L,msize=262144,access=any
    [ "$tag" = src ] && opts="$opts,ro"
    mkdir -p "/newroot/mnt/$tag"
    mount -t 9p -o "$opts" "$tag" "/newroot/mnt/$tag" || echo "klx-initramfs: 9p $tag failed"
done
mark switch-root
exec switch_root /newroot /sbin/klx-init
