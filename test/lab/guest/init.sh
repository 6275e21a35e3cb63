#!/bin/busybox sh
# The lab guest's first process (test/lab/vm.ts packs it as /init). It mounts the host's root read-only
# over 9p at /host and the writable results directory at /host/tmp/lab, runs the "pre" scenarios, then
# does what an enclave image's first command does: exec cloister as PID 1 (docs/lab.md).
/bin/busybox --install -s /bin
say() { echo "lab-init: $*"; }
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
while read -r m; do insmod "/lib/modules/$m.ko" || say "insmod $m failed"; done < /modules.order

opts=trans=virtio,version=9p2000.L,msize=512000
mount -t 9p -o "$opts,ro,cache=loose" hostroot /host || { say "cannot mount the host root"; poweroff -f; }
mount -t tmpfs -o mode=1777 tmp /host/tmp
mkdir /host/tmp/lab
mount -t 9p -o "$opts" results /host/tmp/lab || { say "cannot mount the results directory"; poweroff -f; }
for d in proc sys dev; do mount --bind "/$d" "/host/$d"; done

# REPO, NODE, BIN and the pid1 command line (PID1_ARGS), written by the host before the boot.
. /host/tmp/lab/lab.env
# The enclave's state before anyone touches it: lo is down (IFF_UP clear).
cat /sys/class/net/lo/flags > /host/tmp/lab/lo-flags-at-boot
say "pre scenarios"
chroot /host "$NODE" "$REPO/test/lab/guest/driver.ts" pre
say "pid1 scenarios; exec cloister as PID 1"
setsid chroot /host "$NODE" "$REPO/test/lab/guest/driver.ts" pid1 < /dev/null &
cut -d' ' -f1 /proc/uptime > /host/tmp/lab/uptime-at-exec
# shellcheck disable=SC2086 # PID1_ARGS is a word list on purpose
exec chroot /host "$BIN" $PID1_ARGS
