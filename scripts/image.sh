#!/usr/bin/env bash
# `make image`: the OCI image tally:VERSION of tallyd and tallyctl, with podman, from this
# repository and Debian 12's packages only (no registry is needed, none is pulled).
#
#   scripts/image.sh [BUILD]     BUILD: the build directory whose tallyd and tallyctl go in
#                                (default build; a sanitized build is refused)
#
# 1. The base: a root file system of the runtime libraries the binaries link (the list
#    below), unpacked from Debian 12 by `mmdebstrap --variant=extract` (no maintainer script
#    runs, so nothing needs a shell), trimmed by deploy/image/rootfs-hook.sh and written as a
#    tar with every time clamped to SOURCE_DATE_EPOCH. Cached in .cache/image/ under the hash
#    of this recipe, so later builds need no network; IMAGE_REFRESH=1 fetches the packages
#    again (Debian's point releases), and the .packages file beside it names their versions.
# 2. The image: deploy/image/Containerfile, FROM scratch, on a context of that tar and the
#    two binaries with their debug sections stripped, built with --timestamp at the time of
#    the commit they were built from, so the same binaries and base give the same image. The hash of those inputs is a
#    label (tally.inputs): when tally:VERSION already carries it, nothing is rebuilt.
#
# podman reads its settings from deploy/image/containers.conf (CONTAINERS_CONF); nothing is
# written under /etc. IMAGE_SOURCE sets the org.opencontainers.image.source label (default:
# the URL of the git remote origin, if any).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
export CONTAINERS_CONF=$PWD/deploy/image/containers.conf
fail() { echo "image: $*" >&2; exit 1; }

scripts/deps.sh image

# What tallyd and tallyctl load (ldd of both, resolved to their Debian packages) and the CA
# certificates for TLS to servers whose CA is a public one. tests/e2e/test_image.py checks
# that every library the binaries need is in the image.
packages=libc6,libevent-2.1-7,libevent-openssl-2.1-7,libevent-pthreads-2.1-7,libhttp-parser2.9
packages+=,libjwt0,libssl3,libjansson4,libsqlite3-0,libmariadb3,librdkafka1,libnghttp2-14
packages+=,libprotobuf-c1,ca-certificates
suite=bookworm
mirror=${IMAGE_MIRROR:-http://deb.debian.org/debian}

for bin in tallyd tallyctl; do
  [ -x "$build/$bin" ] || fail "$build/$bin is missing: run make first"
  if ldd "$build/$bin" | grep -q -E 'lib(asan|ubsan|tsan)'; then
    fail "$build/$bin is a sanitized build; the image takes the release build (make image)"
  fi
done

# Version and revision as the binaries say them (tallyd --version: "tallyd V (COMMIT; ...)").
version=$(cat VERSION)
said=$("$build/tallyd" --version)
[[ $said == "tallyd $version ("* ]] || fail "$build/tallyd says '$said', VERSION says $version: rebuild"
short=${said#*(}; short=${short%%;*}
revision=$(git rev-parse --verify -q "$short^{commit}" 2>/dev/null || echo "$short")
source=${IMAGE_SOURCE:-$(git remote get-url origin 2>/dev/null || echo unknown)}
# The binaries' commit's time: the same binaries give the same image whatever HEAD is now.
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct "$revision" 2>/dev/null || echo 0)}
created=$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%dT%H:%M:%SZ)

# 1. The base, cached under the hash of its recipe.
cache=.cache/image
mkdir -p "$cache"
key=$( { echo "$packages $suite $mirror"; cat deploy/image/rootfs-hook.sh; } | sha256sum | cut -c1-16)
base=$cache/base-$key.tar
if [ ! -s "$base" ] || [ -n "${IMAGE_REFRESH:-}" ]; then
  # Its times: the last change of its recipe, whatever commit builds it.
  base_epoch=$(git log -1 --format=%ct -- scripts/image.sh deploy/image/rootfs-hook.sh 2>/dev/null)
  echo "image: making the base from Debian 12 ($suite) into $base"
  rm -f "$base.tmp"
  SOURCE_DATE_EPOCH=${base_epoch:-$SOURCE_DATE_EPOCH} mmdebstrap --quiet --variant=extract --mode=root --format=tar --skip=output/dev --skip=cleanup \
    --include="$packages" \
    --extract-hook="ls \"\$1/var/cache/apt/archives\" | sed -n 's/\\.deb\$//p' > $PWD/$base.packages" \
    --extract-hook="$PWD/deploy/image/rootfs-hook.sh \"\$1\"" \
    "$suite" "$base.tmp" "$mirror"
  mv "$base.tmp" "$base"
fi

# 2. The context: the base and the binaries, stripped of their debug sections.
ctx=$build/image
rm -rf "$ctx" && mkdir -p "$ctx"
cp "$base" "$ctx/base.tar"
for bin in tallyd tallyctl; do
  strip --strip-debug -o "$ctx/$bin" "$build/$bin"
  chmod 0755 "$ctx/$bin"
  touch -d "@$SOURCE_DATE_EPOCH" "$ctx/$bin"
done
inputs=$( { sha256sum "$ctx/base.tar" "$ctx/tallyd" "$ctx/tallyctl" | cut -d' ' -f1
            cat deploy/image/Containerfile
            echo "$version $revision $source $created"; } | sha256sum | cut -c1-32)

tag=tally:$version
have=$(podman image inspect "$tag" --format '{{index .Labels "tally.inputs"}}' 2>/dev/null || true)
if [ "$have" = "$inputs" ]; then
  echo "image: $tag is up to date ($(podman image inspect "$tag" --format '{{.Id}}' | cut -c1-12))"
  exit 0
fi

annotations=()
for kv in "org.opencontainers.image.version=$version" "org.opencontainers.image.revision=$revision" \
          "org.opencontainers.image.source=$source" "org.opencontainers.image.created=$created"; do
  annotations+=(--annotation "$kv")
done
old=$(podman image inspect "$tag" --format '{{.Id}}' 2>/dev/null || true)
podman build --quiet --layers=false --format oci --pull=never --timestamp "$SOURCE_DATE_EPOCH" \
  -f deploy/image/Containerfile \
  --build-arg VERSION="$version" --build-arg REVISION="$revision" \
  --build-arg SOURCE="$source" --build-arg CREATED="$created" \
  --label tally.inputs="$inputs" "${annotations[@]}" \
  -t "$tag" "$ctx" >/dev/null
# The image this one replaces, unless a container still uses it.
id=$(podman image inspect "$tag" --format '{{.Id}}')
[ -z "$old" ] || [ "$old" = "$id" ] || podman rmi "$old" >/dev/null 2>&1 || true
size=$(podman image inspect "$tag" --format '{{.Size}}')
echo "image: $tag built (${id:0:12}," \
     "$((size / 1048576)) MiB, revision ${revision:0:12})"
