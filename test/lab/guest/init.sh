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
mkdir -p /results
mount -t 9p -o "$opts" results /results || { say "cannot mount the results directory"; poweroff -f; }
# REPO, NODE, BIN and the pid1 command line (PID1_ARGS), written by the host before the boot.
. /results/lab.env
# The guest's /tmp is a fresh tmpfs (the host root is read-only). A checkout, runtime or binary that lives under
# the host's /tmp (CI may clone there) would vanish under it, so keep the host's /tmp at /hosttmp and bind each
# of their top folders back into the tmpfs.
mkdir -p /hosttmp
mount --bind /host/tmp /hosttmp
mount -t tmpfs -o mode=1777 tmp /host/tmp
for p in "$REPO" "$NODE" "$BIN"; do
  case "$p" in
    /tmp/?*) top=${p#/tmp/}; top=${top%%/*}
      mkdir -p "/host/tmp/$top" && mount --bind "/hosttmp/$top" "/host/tmp/$top" || say "cannot keep /tmp/$top" ;;
  esac
done
mkdir /host/tmp/lab
mount --bind /results /host/tmp/lab
for d in proc sys dev; do mount --bind "/$d" "/host/$d"; done

# The enclave's state before anyone touches it: lo is down (IFF_UP clear).
cat /sys/class/net/lo/flags > /host/tmp/lab/lo-flags-at-boot
say "pre scenarios"
chroot /host "$NODE" "$REPO/test/lab/guest/driver.ts" pre
say "pid1 scenarios; exec cloister as PID 1"
setsid chroot /host "$NODE" "$REPO/test/lab/guest/driver.ts" pid1 < /dev/null &
cut -d' ' -f1 /proc/uptime > /host/tmp/lab/uptime-at-exec
# shellcheck disable=SC2086 # PID1_ARGS is a word list on purpose
exec chroot /host "$BIN" $PID1_ARGS
