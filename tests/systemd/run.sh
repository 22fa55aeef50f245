#!/bin/sh
# The systemd guest's scenario driver, run by luo-test.service at every boot
# from the scenario's disk (/luo). Stage 1: start the fd-store services,
# load the next kernel and let systemd do the live update (systemctl kexec).
# Stage 2: start them again and let them check what came back. Progress is
# printed as "LUO-VM:" lines, as the initramfs guests print them, straight to
# the console so that none is lost when the machine goes down.
exec > /dev/console 2>&1

stage=$(sed -n 's/.*luo_stage=\([0-9]*\).*/\1/p' /proc/cmdline)
stage=${stage:-1}

fail() {
	echo "LUO-VM: stage $stage: script failed: $*"
	systemd_log
	echo "LUO-VM: stage $stage: done"
	systemctl --no-block reboot
	exit 1
}

# What systemd itself said about LUO and the fd stores, for the harness to
# show on failure: PID 1 logs to the kernel's ring buffer (debug included,
# kept off the console by its level), the services to the journal.
systemd_log() {
	dmesg | grep -i -E 'luo|liveupdate|fd ?store' |
		grep -v -E 'journald|unit_file_build_name_map|Executing:|luo-[a-z]+\.service: (Kernel keyring|Shared library|Neither|Loaded shared|Failed to set|Will spawn|About to|Forked|Changed|Child|Control process|Running next|Main process|Succeeded|Consumed|Deactivated|Trying to|Installed new job|Enqueued job|Job )' |
		sed 's/^/LUO-SYSTEMD: /'
	journalctl -b -o short-monotonic --no-pager -u luo-memfd -u luo-session 2>/dev/null |
		sed 's/^/LUO-SYSTEMD: /'
}

# The number of fds in a unit's fd store.
fdstore() {
	systemctl show -P NFileDescriptorStore "$1"
}

echo "LUO-VM: stage $stage: start (systemd $(cat /etc/luo-systemd-version))"
systemctl set-environment LUO_STAGE="$stage" || fail "systemctl set-environment"

if [ "$stage" = 1 ]; then
	systemctl start luo-memfd.service || fail "luo-memfd.service did not start"
	systemctl start luo-session.service || fail "luo-session.service did not start"
	for unit in luo-memfd luo-session; do
		n=$(fdstore $unit.service)
		echo "LUO-VM: $unit.service holds $n fd(s) in its fd store"
		[ "$n" = 1 ] || fail "$unit.service should hold 1 fd"
	done
	next="$(sed 's/ *luo_stage=[0-9]*//' /proc/cmdline) luo_stage=2"
	kexec -s -l /luo/next-kernel --append="$next" || fail "kexec -s -l of the next kernel"
	systemd_log
	echo "LUO-VM: stage 1: script ok"
	echo "LUO-VM: stage 1: systemctl kexec"
	systemctl --no-block kexec || fail "systemctl kexec"
	exit 0
fi

# After the update: systemd restored the fd stores at boot, before any unit ran.
for unit in luo-memfd luo-session; do
	n=$(fdstore $unit.service)
	echo "LUO-VM: $unit.service got $n fd(s) back in its fd store"
done
systemctl start luo-memfd.service || echo "LUO-VM: luo-memfd.service failed after the update"
systemctl start luo-session.service || echo "LUO-VM: luo-session.service failed after the update"
systemd_log
echo "LUO-VM: stage 2: script ok"
echo "LUO-VM: stage 2: done"
systemctl --no-block reboot
