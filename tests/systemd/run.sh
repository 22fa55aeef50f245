#!/bin/sh
# The systemd guest's scenario driver, run by luo-test.service at every boot
# from the scenario's disk (/luo). Stage 1: start the fd-store services and
# luo-agent (as packaged, --systemd) with a kv-service's data in it, then
# have the agent load the next kernel and systemd do the live update
# (systemctl kexec). Stage 2: start them again and let them check what came
# back. Progress is printed as "LUO-VM:" lines, as the initramfs guests
# print them, straight to the console so that none is lost when the machine
# goes down.
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
	journalctl -b -o short-monotonic --no-pager -u luo-memfd -u luo-session -u luo-agent 2>/dev/null |
		sed 's/^/LUO-SYSTEMD: /'
}

# The number of fds in a unit's fd store.
fdstore() {
	systemctl show -P NFileDescriptorStore "$1"
}

echo "LUO-VM: stage $stage: start (systemd $(cat /etc/luo-systemd-version))"
systemctl set-environment LUO_STAGE="$stage" || fail "systemctl set-environment"

if [ "$stage" = 1 ]; then
	# luo-agent first: while it runs, a service still opens /dev/liveupdate
	# to make a session of its own (luo-session), and systemd at the kexec.
	# The first client starts the agent (socket activation).
	systemctl start luo-agent.socket || fail "luo-agent.socket did not start"
	/luo/kv-service start cache-a 16 || fail "kv-service could not hand its data to the agent"
	echo "LUO-VM: luo-agent.service is $(systemctl is-active luo-agent.service) after the first client"
	# Another user reaches the agent (its socket is 0666) but nothing of root's.
	nobody="setpriv --reuid=65534 --regid=65534 --clear-groups"
	$nobody /luo/luoctl list
	$nobody /luo/luoctl release cache-a && fail "nobody released root's session"
	$nobody /luo/luoctl kexec /luo/next-kernel /luo/empty.cpio x && fail "nobody live updated"
	# The journal has the agent's refusals as warnings, what it holds as
	# information (the agent prefixes each line with its priority).
	for i in $(seq 25); do
		journalctl -b -u luo-agent -p warning -o cat --no-pager > /tmp/warnings
		grep -q 'refused (NotPermitted)' /tmp/warnings && break
		sleep 0.2
	done
	journalctl -b -u luo-agent -p info -o cat --no-pager > /tmp/info
	if grep -q 'refused (NotPermitted)' /tmp/warnings && ! grep -q 'holding token' /tmp/warnings &&
		grep -q 'holding token' /tmp/info; then
		echo "LUO-VM: the agent's refusals are warnings in the journal, the rest information"
	fi
	systemctl start luo-memfd.service || fail "luo-memfd.service did not start"
	systemctl start luo-session.service || fail "luo-session.service did not start"
	for unit in luo-memfd luo-session; do
		n=$(fdstore $unit.service)
		echo "LUO-VM: $unit.service holds $n fd(s) in its fd store"
		[ "$n" = 1 ] || fail "$unit.service should hold 1 fd"
	done
	# A restart of the agent loses nothing: its fd store gives it all back.
	systemctl restart luo-agent.service || fail "luo-agent.service did not restart"
	/luo/luoctl list
	echo "LUO-VM: luo-agent.service holds $(fdstore luo-agent.service) fd(s) in its fd store"
	next="$(sed 's/ *luo_stage=[0-9]*//' /proc/cmdline) luo_stage=2"
	systemd_log
	echo "LUO-VM: stage 1: script ok"
	echo "LUO-VM: stage 1: systemctl kexec"
	# The agent loads the kernel and has systemd do the update.
	/luo/luoctl kexec /luo/next-kernel /luo/empty.cpio "$next" || fail "luoctl kexec"
	exit 0
fi

# After the update: systemd restored the fd stores at boot, before any unit ran.
for unit in luo-memfd luo-session luo-agent; do
	n=$(fdstore $unit.service)
	echo "LUO-VM: $unit.service got $n fd(s) back in its fd store"
done
systemctl start luo-memfd.service || echo "LUO-VM: luo-memfd.service failed after the update"
systemctl start luo-session.service || echo "LUO-VM: luo-session.service failed after the update"
systemctl start luo-agent.socket || echo "LUO-VM: luo-agent.socket failed after the update"
if systemctl start luo-agent.service; then
	# A client whose command fails loses nothing, across a restart of the
	# agent too: the agent keeps the file until a client confirms it.
	/luo/luoctl retrieve cache-a 1 -- /bin/false
	systemctl restart luo-agent.service
	/luo/kv-service resume cache-a
	/luo/luoctl list
	echo "LUO-VM: luo-agent.service holds $(fdstore luo-agent.service) fd(s) in its fd store"
else
	echo "LUO-VM: luo-agent.service failed after the update"
fi
systemd_log
echo "LUO-VM: stage 2: script ok"
echo "LUO-VM: stage 2: done"
systemctl --no-block reboot
