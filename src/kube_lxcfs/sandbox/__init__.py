"""Single-machine mode: run a command under limits with the virtual /proc."""
