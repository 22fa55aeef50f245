#!/bin/sh
# mmdebstrap customize hook of scripts/systemd-rootfs.sh: $1 is the guest
# tree. Sets the guest up to run one scenario per boot from its second disk
# and adds the units whose fd stores the scenarios carry across a kexec.
set -eu
root=$1
sd=$root/etc/systemd/system

echo luo-guest > "$root/etc/hostname"
: > "$root/etc/fstab"

# The scenario driver: /luo/run.sh from the second disk, at every boot, its
# output on the serial console for the test harness.
cat > "$sd/luo-test.service" <<'EOF'
[Unit]
Description=luo-rs scenario driver (/luo/run.sh on the second disk)
After=local-fs.target

[Service]
Type=oneshot
ExecStartPre=/bin/mkdir -p /luo
ExecStartPre=/bin/mount -o ro /dev/vdb /luo
ExecStart=/bin/sh /luo/run.sh
StandardOutput=journal+console
StandardError=journal+console

[Install]
WantedBy=multi-user.target
EOF
mkdir -p "$sd/multi-user.target.wants"
ln -sf ../luo-test.service "$sd/multi-user.target.wants/luo-test.service"

# The two services of the scenarios. Each keeps what it must not lose in its
# fd store, and asks systemd to carry the store across a kexec; the driver
# starts them with LUO_STAGE set in the manager's environment (1: before the
# update, store; 2: after it, check every byte).
for what in memfd session; do
	cat > "$sd/luo-$what.service" <<EOF
[Unit]
Description=luo-rs: a $what kept in the fd store across a live update

[Service]
Type=oneshot
RemainAfterExit=yes
NotifyAccess=main
FileDescriptorStoreMax=4
FileDescriptorStorePreserve=yes
ExecStart=/luo/luo-fdstore $what \${LUO_STAGE}
StandardOutput=journal+console
StandardError=journal+console
EOF
done

# luo-agent as packaged (tools/luo-agent/systemd/luo-agent.service and
# .socket), its binary taken from the scenario's disk; the driver starts the
# socket, and the first client the agent.
cp "$LUO_ROOT/tools/luo-agent/systemd/luo-agent.service" "$sd/luo-agent.service"
cp "$LUO_ROOT/tools/luo-agent/systemd/luo-agent.socket" "$sd/luo-agent.socket"
mkdir -p "$sd/luo-agent.service.d"
cat > "$sd/luo-agent.service.d/luo-test.conf" <<'EOF'
[Service]
ExecStart=
ExecStart=/luo/luo-agent --systemd --unclaimed-grace 86400
StandardOutput=journal+console
StandardError=journal+console
EOF

# Nothing else starts on its own: no logins on the console, no timers.
for unit in getty@tty1.service serial-getty@ttyS0.service console-getty.service \
	apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer e2scrub_all.timer \
	fstrim.timer systemd-tmpfiles-clean.timer; do
	ln -sf /dev/null "$sd/$unit"
done

# A hung stop job must not eat the test's timeout.
mkdir -p "$root/etc/systemd/system.conf.d"
cat > "$root/etc/systemd/system.conf.d/luo-rs.conf" <<'EOF'
[Manager]
DefaultTimeoutStopSec=15s
EOF
