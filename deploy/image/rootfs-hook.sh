#!/bin/sh
# The image's root file system, trimmed: run by mmdebstrap (scripts/image.sh) as its
# extract hook (the one hook the extract variant runs), on the host, with $1 the root that
# --variant=extract unpacked from Debian 12's packages (the runtime libraries tallyd and
# tallyctl link, and ca-certificates), and SOURCE_DATE_EPOCH set.
#
# What stays is what the two binaries load and read at run time: the dynamic loader and
# libraries, OpenSSL's and MariaDB's configuration, the CA bundle. What goes: every program
# (no shell, no openssl, no debconf and its Perl), documentation, locales, gconv modules,
# package-manager state. Nothing was "installed": --variant=extract runs no maintainer
# script, so what those would have made (the CA bundle, the loader's cache) is made here.
set -eu
root=$1

# The CA bundle update-ca-certificates would have written, in its order and form, from the
# Mozilla set the package ships; OpenSSL (MariaDB, Redis TLS) and librdkafka look here.
mkdir -p "$root/etc/ssl/certs"
find "$root/usr/share/ca-certificates/mozilla" -name '*.crt' | LC_ALL=C sort |
  while read -r crt; do cat "$crt"; done > "$root/etc/ssl/certs/ca-certificates.crt"
test -s "$root/etc/ssl/certs/ca-certificates.crt"

rm -rf "$root/usr/bin" "$root/usr/sbin" "$root/bin" "$root/sbin" \
       "$root/usr/share/doc" "$root/usr/share/man" "$root/usr/share/locale" \
       "$root/usr/share/lintian" "$root/usr/share/perl5" "$root/usr/share/debconf" \
       "$root/usr/share/pixmaps" "$root/usr/share/ca-certificates" \
       "$root/usr/share/bash-completion" "$root/usr/share/mysql-common" \
       "$root/usr/lib/x86_64-linux-gnu/gconv" "$root/usr/lib/x86_64-linux-gnu/perl5" \
       "$root/usr/lib/ssl/misc" "$root/var/cache/debconf" "$root/var/lib/dpkg" \
       "$root/var/lib/apt" "$root/var/cache/apt" "$root/var/log" \
       "$root/etc/apt" "$root/etc/dpkg" "$root/etc/debconf.conf" "$root/etc/fstab" \
       "$root/etc/ca-certificates" "$root/etc/ca-certificates.conf" \
       "$root/etc/resolv.conf" "$root/etc/hostname"   # the host's: podman mounts its own
mkdir -p "$root/usr/local/bin"

# The loader's cache, so a library is found without searching every directory.
/sbin/ldconfig -r "$root"
rm -rf "$root/var/cache"

# One user and group, tally (10001), fixed so volumes and secrets can be owned by it; no
# login, no home but the data directory. root stays for the files the image owns.
printf 'root:x:0:0:root:/root:/usr/sbin/nologin\ntally:x:10001:10001:tally:/var/lib/tally:/usr/sbin/nologin\n' \
  > "$root/etc/passwd"
printf 'root:x:0:\ntally:x:10001:\n' > "$root/etc/group"
printf 'hosts: files dns\n' > "$root/etc/nsswitch.conf"

# The one writable place: the data directory, a volume in use (the store, backups).
install -d -m 0700 -o 10001 -g 10001 "$root/var/lib/tally"
rm -rf "$root/tmp"   # mmdebstrap's apt configuration
install -d -m 1777 "$root/tmp"

# Every time at SOURCE_DATE_EPOCH (files unpacked, and those made here), so the same packages
# give the same tar.
find "$root" -newermt "@$SOURCE_DATE_EPOCH" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
