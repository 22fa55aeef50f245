#!/bin/busybox sh
# PID 1 of every test VM stage.
#
# Runs /stage.sh, then, if this initramfs carries a next stage, kexecs into
# it with the same command line and luo_stage=N+1, plus whatever the script
# wrote to /tmp/next-cmdline (so a test can boot the next kernel differently). Progress is printed as
# "LUO-VM:" lines that the host-side runner checks in the serial log. A
# script that leaves an executable /tmp/kexec-with has it do the kexec
# instead (for example through luo-agent), with the same arguments.
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mount -t debugfs debugfs /sys/kernel/debug
mount -t tmpfs tmpfs /tmp
stage=$(sed -n 's/.*luo_stage=\([0-9]*\).*/\1/p' /proc/cmdline)
stage=${stage:-1}
export LUO_STAGE=$stage
cd /
echo "LUO-VM: stage $stage: start"
if sh -e /stage.sh; then
	echo "LUO-VM: stage $stage: script ok"
	if [ -f /next/kernel ]; then
		next=$((stage + 1))
		cmd="$(sed 's/ *luo_stage=[0-9]*//' /proc/cmdline) luo_stage=$next"
		[ -f /tmp/next-cmdline ] && cmd="$cmd $(cat /tmp/next-cmdline)"
		echo "LUO-VM: stage $stage: kexec into stage $next"
		if [ -x /tmp/kexec-with ]; then
			/tmp/kexec-with /next/kernel /next/initrd "$cmd"
		else
			luo-kexec /next/kernel /next/initrd "$cmd"
		fi
		echo "LUO-VM: stage $stage: kexec failed"
	fi
else
	echo "LUO-VM: stage $stage: script failed with status $?"
fi
echo "LUO-VM: stage $stage: done"
reboot -f
