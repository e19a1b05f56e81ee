#!/bin/sh
# make check-ktls: tpops with kernel TLS, in a virtual machine whose kernel
# has the TLS upper layer protocol (the machines the tests run on may not).
#
#   tests/ktls/run.sh BUILD-DIR
#
# The VM runs Debian's own kernel (linux-image-amd64, fetched with
# `apt-get download` into build/ktls/) under QEMU, without KVM (TCG: it
# works inside other VMs, and the check is about bytes, not speed). Its
# root file system is this machine's root, read-only over 9p; its /run is
# a tmpfs for everything it writes. A Debian machine loads the modules it
# needs by itself; the VM cannot (its root has no /lib/modules), so an
# initramfs made here with busybox-static loads virtio, 9p and tls, and
# leaves the cipher modules (AES-GCM, ChaCha20) in /run/ktls-mod. Then
# tests/ktls/in_vm.sh runs tpops without the ciphers, loads them, and runs
# it again (once more with sendfile(2) refused through a library built here
# from tests/ktls/refuse_sendfile.c), each time checked by
# tests/ktls/check.py. The VM's console is the output; the last line says
# how it went.
set -eu
build=$(cd "${1:?usage: run.sh BUILD-DIR}" && pwd)
root=$(cd "$(dirname "$0")/../.." && pwd)
work=$root/build/ktls
mkdir -p "$work"

for tool in qemu-system-x86_64 cpio cc; do
	command -v $tool >/dev/null || { echo "check-ktls: $tool is missing (scripts/deps.sh ktls)" >&2; exit 1; }
done
[ -x /bin/busybox ] && busybox=/bin/busybox || { echo "check-ktls: busybox is missing (busybox-static)" >&2; exit 1; }
ldd "$busybox" 2>&1 | grep -q 'not a dynamic executable' ||
	{ echo "check-ktls: $busybox is not static (install busybox-static)" >&2; exit 1; }

# Debian's kernel: the package linux-image-amd64 depends on
pkg=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ { print $2; exit }')
[ -n "$pkg" ] || { echo "check-ktls: apt-cache knows no linux-image-amd64 (apt-get update?)" >&2; exit 1; }
kdir=$work/$pkg
if [ ! -e "$kdir/.done" ]; then
	rm -rf "$kdir" && mkdir -p "$kdir"
	(cd "$kdir" && apt-get download -q "$pkg" 2>&1 | grep -v '^W: Download is performed unsandboxed' >&2 || true)
	deb=$(ls "$kdir"/*.deb 2>/dev/null | head -1)
	[ -n "$deb" ] || { echo "check-ktls: apt-get download $pkg failed" >&2; exit 1; }
	dpkg-deb -x "$deb" "$kdir/x"
	rm -f "$deb"
	touch "$kdir/.done"
fi
kernel=$(ls "$kdir"/x/boot/vmlinuz-* | head -1)
mods=$(ls -d "$kdir"/x/lib/modules/*/kernel | head -1)

# sendfile(2) refused, for the run that checks the way back to copying
cc -shared -fPIC -O2 -o "$work/refuse_sendfile.so" "$root/tests/ktls/refuse_sendfile.c"

# the initramfs: busybox, the modules in load order, and /init. The root
# file system's and tls are loaded at once; the ciphers' are left in
# /run/ktls-mod for in_vm.sh, which first checks tpops without them.
ir=$work/initramfs
rm -rf "$ir" && mkdir -p "$ir/bin" "$ir/lib/mod" "$ir/lib/ciphers" "$ir/proc" "$ir/sys" "$ir/dev" "$ir/newroot"
cp "$busybox" "$ir/bin/busybox"
modules() { # DIR MODULE...: copies them into DIR, prints their file names in order
	dir=$1
	shift
	for m in "$@"; do
		f=$mods/$m.ko
		[ -e "$f" ] || { echo "check-ktls: the kernel package has no $m.ko" >&2; exit 1; }
		cp "$f" "$dir/"
		printf ' %s' "${f##*/}"
	done
}
order=$(modules "$ir/lib/mod" drivers/virtio/virtio_ring drivers/virtio/virtio \
	drivers/virtio/virtio_pci_modern_dev drivers/virtio/virtio_pci_legacy_dev drivers/virtio/virtio_pci \
	net/9p/9pnet net/9p/9pnet_virtio fs/netfs/netfs fs/fscache/fscache fs/9p/9p net/tls/tls)
ciphers=$(modules "$ir/lib/ciphers" crypto/gf128mul crypto/ghash-generic crypto/cryptd crypto/crypto_simd \
	arch/x86/crypto/aesni-intel arch/x86/crypto/ghash-clmulni-intel crypto/ctr crypto/gcm \
	crypto/chacha20poly1305)
cat > "$ir/init" <<EOF
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in $order; do
	insmod /lib/mod/\$m 2>/dev/null || echo "ktls-vm: cannot load \$m"
done
mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=512000,cache=loose hostroot /newroot ||
	{ echo "ktls-vm: cannot mount the root"; poweroff -f; }
mount -t tmpfs tmpfs /newroot/run
mkdir /newroot/run/ktls-mod
cp /bin/busybox /lib/ciphers/* /newroot/run/ktls-mod/
echo "$ciphers" > /newroot/run/ktls-mod/order
exec switch_root /newroot /bin/bash $root/tests/ktls/in_vm.sh $build
EOF
chmod 755 "$ir/init"
(cd "$ir" && find . | cpio -o -H newc 2>/dev/null | gzip -1) > "$work/initramfs.gz"

# TCG, 2 CPUs, no network device (the tests use the VM's loopback)
timeout "${KTLS_TIMEOUT:-600}" qemu-system-x86_64 -accel tcg -cpu max -smp 2 -m 2048 \
	-nographic -no-reboot -nic none -kernel "$kernel" -initrd "$work/initramfs.gz" \
	-append "console=ttyS0 quiet panic=-1" \
	-virtfs local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap \
	</dev/null 2>&1 | tr -d '\r' | tee "$work/console.log" | grep -a '^ktls'
grep -aq '^ktls-result: passed' "$work/console.log" || {
	echo "check-ktls: failed; the VM's console is in $work/console.log" >&2
	exit 1
}
