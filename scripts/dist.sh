#!/usr/bin/env bash
# `make dist`: tally's release artifacts, made from the commit at HEAD (or --rev), never from
# the working tree, which may hold changes nobody committed:
#
#   OUT/tally-V.tar.gz        `git archive` of HEAD under tally-V/: every tracked file, the
#                             vendored third_party/ included. Entries in git's tree order, each
#                             with the commit's time, the commit id in the pax header (`git
#                             get-tar-commit-id`), gzip without a name or a time: the same
#                             commit gives the same bytes.
#   OUT/tally_V-1_ARCH.deb    that tarball unpacked and built as `make` builds a release (with
#                             Debian's hardening flags added), stripped, and packaged by
#                             dpkg-deb alone: no debhelper, no debian/ tree. deploy/debian/
#                             holds the package's own files (control template, maintainer
#                             scripts, /etc/default/tally); the unit is made from
#                             deploy/systemd/tallyd.service by substitution, so that file stays
#                             the one source of truth. Every input comes from the tarball.
#   OUT/SHA256SUMS            of both (`sha256sum -c SHA256SUMS` in OUT checks them).
#
# V, the version, follows VERSION and CHANGELOG.md at HEAD (docs/operations.md, "Installing the
# Debian package"):
#   - CHANGELOG.md's newest released section is `## [VERSION] - YYYY-MM-DD` and its
#     `## [Unreleased]` section lists nothing: a release, V = VERSION;
#   - VERSION is above every released section and `## [Unreleased]` lists changes: a build
#     on the way to VERSION, V = VERSION~dev (which Debian orders before VERSION);
#   - anything else (VERSION released but changes listed since, VERSION at or below an older
#     release, no changes and no release, a `## ` heading of another form) is refused:
#     one line on stderr, exit 2, nothing written.
#
# Depends: is what dpkg-shlibdeps finds for the two binaries (each shared library they link,
# mapped through Debian's shlibs and symbols files to its package and the lowest version
# that has the symbols used), plus adduser for the postinst. dpkg-shlibdeps wants a
# debian/control; a two-stanza one is written in the scratch directory for it.
#
# Usage: scripts/dist.sh [--check | --source] [--rev REV] [OUT]   (OUT: dist, made when missing)
#   --check    print V and exit (0, or 2 as above)
#   --source   the tarball and its SHA256SUMS only (no build)
#   --rev REV  a commit or tag other than HEAD (resolved once: a commit made meanwhile by
#              someone else changes nothing)
# JOBS (default: the number of CPUs) is make's -j for the build. Needs git, gzip, make and the
# build dependencies (scripts/deps.sh build), dpkg-deb and dpkg-shlibdeps (dpkg-dev,
# installed here when missing).
set -euo pipefail
prog=dist

die() { echo "$prog: $*" >&2; exit 2; }

usage="usage: scripts/dist.sh [--check | --source] [--rev REV] [OUT]"
mode=all rev=HEAD
while [ $# -gt 0 ]; do
  case "$1" in
    --check) mode=check ;;
    --source) mode=source ;;
    --rev) [ $# -ge 2 ] || die "--rev needs a commit ($usage)"; rev=$2; shift ;;
    -*) die "unknown option '$1' ($usage)" ;;
    *) break ;;
  esac
  shift
done
[ $# -le 1 ] || die "too many arguments ($usage)"
out=${1:-dist}

commit=$(git rev-parse --verify -q "$rev^{commit}") || die "no commit '$rev' in $(pwd)"

# The version to build, from VERSION and CHANGELOG.md of the commit (rules above).
dist_version() {
  local version changelog headings line newest="" unreleased=no entries=no seen_release=no
  version=$(git show "$commit:VERSION" 2>/dev/null) || die "no VERSION in ${commit:0:12}"
  [[ "$version" =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || die "VERSION '$version' is not X.Y.Z"
  changelog=$(git show "$commit:CHANGELOG.md" 2>/dev/null) || die "no CHANGELOG.md in ${commit:0:12}"
  # One line per `## ` heading (U, R X.Y.Z, or B and the heading), then E if the Unreleased
  # section holds any line that is neither blank nor a heading.
  headings=$(awk '
    /^## / {
      if ($0 ~ /^## \[Unreleased\][ \t]*$/) { print "U"; in_u = 1; next }
      if ($0 ~ /^## \[[0-9]+\.[0-9]+\.[0-9]+\] - [0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9][ \t]*$/) {
        v = $0; sub(/^## \[/, "", v); sub(/\].*$/, "", v); print "R " v; in_u = 0; next
      }
      print "B " $0; exit
    }
    in_u && NF && !/^#/ && !said { print "E"; said = 1 }' <<<"$changelog")
  while IFS= read -r line; do
    case "$line" in
      U) [ $seen_release = no ] || die "CHANGELOG.md: '## [Unreleased]' comes after a release"
         unreleased=yes ;;
      E) entries=yes ;;
      R\ *) seen_release=yes; [ -n "$newest" ] || newest=${line#R } ;;
      B\ *) die "CHANGELOG.md: heading '${line#B }' is neither '## [Unreleased]' nor '## [X.Y.Z] - YYYY-MM-DD'" ;;
    esac
  done <<<"$headings"
  if [ "$newest" = "$version" ]; then
    [ $entries = no ] || die "CHANGELOG.md lists changes under [Unreleased] but VERSION $version is released (## [$version]): raise VERSION"
    echo "$version"
  elif grep -qx "R $version" <<<"$headings"; then
    die "VERSION $version is older than CHANGELOG.md's newest release $newest"
  elif [ -n "$newest" ] && [ "$(printf '%s\n' "$newest" "$version" | sort -V | tail -n 1)" != "$version" ]; then
    die "VERSION $version is below CHANGELOG.md's newest release $newest"
  elif [ $unreleased = no ] || [ $entries = no ]; then
    die "VERSION $version has no '## [$version] - DATE' section in CHANGELOG.md and [Unreleased] lists no changes"
  else
    echo "$version~dev"
  fi
}

V=$(dist_version)
if [ $mode = check ]; then
  echo "$V"
  exit 0
fi

mkdir -p "$out"
out=$(cd "$out" && pwd)
epoch=$(git log -1 --format=%ct "$commit")
export SOURCE_DATE_EPOCH=$epoch TZ=UTC LC_ALL=C
umask 022
work=$(mktemp -d "${TMPDIR:-/tmp}/tally-dist.XXXXXX")
trap 'rm -rf "$work"' EXIT

# The source tarball. git archive stamps every entry with the commit's time and writes the
# commit id into the pax header; gzip -n leaves out the name and time it would add.
tarball=tally-$V.tar.gz
git archive --format=tar --prefix="tally-$V/" "$commit" | gzip -9n >"$work/$tarball"
artifacts=("$tarball")

if [ $mode = all ]; then
  for tool in dpkg-deb dpkg-shlibdeps; do
    command -v $tool >/dev/null && continue
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    echo "$prog: installing dpkg-dev (for $tool)"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
      dpkg-dev >/dev/null
  done

  src=$work/tally-$V
  tar -xzf "$work/$tarball" -C "$work"
  # A release build (make's -O2 -g) of the unpacked tarball, outside any git repository, so
  # the commit is given. Debian's hardening flags (dpkg-buildflags) come in through CFLAGS
  # and LDFLAGS, which the Makefile extends; -ffile-prefix-map keeps the scratch path out.
  echo "$prog: building tally $V (commit ${commit:0:12}) from $tarball"
  CFLAGS="-fstack-protector-strong -fstack-clash-protection -D_FORTIFY_SOURCE=2" \
  LDFLAGS="-Wl,-z,relro -Wl,-z,now" \
    make -C "$src" --no-print-directory -j"${JOBS:-$(nproc)}" BUILD=build \
      COMMIT="${commit:0:12}" OPT="-O2 -g -ffile-prefix-map=$src=." build/tallyd build/tallyctl \
      >"$work/build.log" 2>&1 || { tail -n 30 "$work/build.log" >&2; die "the build failed"; }

  arch=$(dpkg --print-architecture)
  deb=tally_$V-1_$arch.deb
  root=$work/pkg
  doc=$root/usr/share/doc/tally
  install -d "$root/DEBIAN" "$root/usr/bin" "$root/lib/systemd/system" "$root/etc/default" \
    "$doc/examples"
  for b in tallyd tallyctl; do
    install -m 0755 "$src/build/$b" "$root/usr/bin/$b"
    strip --remove-section=.comment --remove-section=.note "$root/usr/bin/$b"
  done

  # The unit: deploy/systemd/tallyd.service with the package's paths and its static user.
  # Each line replaced must be there exactly once, or the unit changed and this must too.
  unit=$src/deploy/systemd/tallyd.service
  for line in 'ExecStart=/usr/local/bin/tallyd' 'EnvironmentFile=-/etc/tally/tallyd.env' \
              'Documentation=file:///usr/local/share/doc/tally/operations.md' \
              'DynamicUser=yes' 'SupplementaryGroups=tally' '[Unit]'; do
    [ "$(grep -cxF -- "$line" "$unit")" = 1 ] ||
      die "deploy/systemd/tallyd.service: '$line' is not there exactly once (scripts/dist.sh substitutes it)"
  done
  {
    cat <<'EOF'
# tallyd.service as the tally Debian package installs it, made by scripts/dist.sh from
# deploy/systemd/tallyd.service (docs/operations.md explains each setting) with the package's
# paths: /usr/bin/tallyd, settings in /etc/default/tally (a conffile). The service runs as
# the system user tally, which the package creates, in place of DynamicUser=: its SQLite
# store in /var/lib/tally, and the secrets an administrator puts in /etc/tally (root:tally,
# mode 0640), belong to the same user on every start and to `runuser -u tally tallyctl ...`.
#
# Change settings in /etc/default/tally; change the unit with `systemctl edit tallyd`.
# `systemctl reload tallyd` sends SIGHUP (API keys, users' token keys, TLS certificate).

EOF
    sed -n '/^\[Unit\]$/,$p' "$unit" | sed \
      -e 's|^ExecStart=/usr/local/bin/tallyd$|ExecStart=/usr/bin/tallyd|' \
      -e 's|^EnvironmentFile=-/etc/tally/tallyd.env$|EnvironmentFile=-/etc/default/tally|' \
      -e 's|^Documentation=file:///usr/local/share/doc/tally/operations.md$|Documentation=file:///usr/share/doc/tally/operations.md.gz|' \
      -e 's|^DynamicUser=yes$|User=tally\nGroup=tally|' \
      -e '/^SupplementaryGroups=tally$/d'
  } >"$root/lib/systemd/system/tallyd.service"

  install -m 0644 "$src/deploy/debian/tally.default" "$root/etc/default/tally"
  install -m 0644 "$src/deploy/systemd/tallyd.env.example" "$doc/examples/tallyd.env.example"
  gzip -9n <"$src/CHANGELOG.md" >"$doc/changelog.gz"
  gzip -9n <"$src/README.md" >"$doc/README.md.gz"
  gzip -9n <"$src/docs/operations.md" >"$doc/operations.md.gz"
  {
    echo "tally ($V-1) unstable; urgency=medium"
    echo
    echo "  * Built by scripts/dist.sh from commit $commit (see changelog.gz)."
    echo
    echo " -- $(git log -1 --format='%an <%ae>' "$commit")  $(date -u -R -d "@$epoch")"
  } | gzip -9n >"$doc/changelog.Debian.gz"
  # tally is Apache-2.0; the binaries also hold libvalkey (BSD-3-Clause), whose license asks
  # for its notice in binary distributions.
  {
    cat <<'EOF'
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: tally

Files: *
License: Apache-2.0
 The full text of the license follows, as in tally's LICENSE.

Files: third_party/libvalkey/*
License: BSD-3-Clause
 libvalkey 0.5.0, vendored unedited (third_party/VENDORED.md) and linked into tallyd and
 tallyctl. Its license file, third_party/libvalkey/COPYING, follows tally's.

EOF
    echo "----- LICENSE (tally, Apache-2.0) -----"
    cat "$src/LICENSE"
    echo
    echo "----- third_party/libvalkey/COPYING (libvalkey, BSD-3-Clause) -----"
    cat "$src/third_party/libvalkey/COPYING"
  } >"$doc/copyright"

  for s in postinst prerm postrm; do
    install -m 0755 "$src/deploy/debian/$s" "$root/DEBIAN/$s"
  done
  echo /etc/default/tally >"$root/DEBIAN/conffiles"

  # Depends: the binaries' shared libraries as Debian packages (see the top of this file).
  mkdir -p "$work/shlibs/debian"
  printf 'Source: tally\n\nPackage: tally\nArchitecture: any\n' >"$work/shlibs/debian/control"
  shlibs=$(cd "$work/shlibs" && dpkg-shlibdeps -O --warnings=0 \
             -e"$root/usr/bin/tallyd" -e"$root/usr/bin/tallyctl")
  depends=${shlibs#shlibs:Depends=}
  [ -n "$depends" ] && [ "$depends" != "$shlibs" ] || die "dpkg-shlibdeps found no libraries"
  depends="$depends, adduser"
  # dpkg tracks conffiles itself: md5sums lists the other files.
  (cd "$root" && find . -type f ! -path './DEBIAN/*' ! -path ./etc/default/tally -printf '%P\n' |
     sort | xargs md5sum) >"$root/DEBIAN/md5sums"
  size=$(du -sk --apparent-size --exclude=DEBIAN "$root" | cut -f1)
  maintainer=${DEBFULLNAME:+$DEBFULLNAME <${DEBEMAIL:-}>}
  maintainer=${maintainer:-$(git log -1 --format='%an <%ae>' "$commit")}
  sed -e "s|@VERSION@|$V-1|" -e "s|@ARCH@|$arch|" -e "s|@SIZE@|$size|" \
      -e "s|@DEPENDS@|$depends|" -e "s|@MAINTAINER@|$maintainer|" \
      "$src/deploy/debian/control.in" >"$root/DEBIAN/control"
  ! grep -n '@[A-Z]*@' "$root/DEBIAN/control" >&2 || die "deploy/debian/control.in: a placeholder left"
  chmod 0644 "$root/DEBIAN/control" "$root/DEBIAN/conffiles" "$root/DEBIAN/md5sums"
  find "$root" -type d -exec chmod 0755 {} +
  find "$root" -exec touch -h -d "@$epoch" {} +
  dpkg-deb --root-owner-group -Zxz --build "$root" "$work/$deb" >/dev/null
  artifacts+=("$deb")
fi

for a in "${artifacts[@]}"; do
  mv "$work/$a" "$out/$a"
done
(cd "$out" && sha256sum "${artifacts[@]}" >SHA256SUMS)
for a in "${artifacts[@]}" SHA256SUMS; do
  echo "$out/$a ($(stat -c %s "$out/$a") bytes)"
done
