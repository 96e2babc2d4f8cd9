#!/usr/bin/env bash
# Builds the Docker image lpiotia/mqtt from a static binary compiled on this host.
#
# Usage: docker/build-image.sh [--binary-only]
#
#   --binary-only   build and check the static binary, print its path, and stop there
#
# Environment:
#   IMAGE             image name (default lpiotia/mqtt); tagged VERSION and latest
#   IMAGE_SOURCE      value of the org.opencontainers.image.source label
#                     (default: the URL of the git remote "origin", if any)
#   CARGO_TARGET_DIR  Cargo's target directory (default: target/ of the repository)
#   DOCKER_HOST       Docker engine to build with (default: the docker CLI's own)
#
# The image is FROM scratch, so the binary is linked with glibc statically
# (-C target-feature=+crt-static). It resolves no host names for what it does: it binds
# numeric addresses, reads the host name with gethostname and the interface addresses with
# getifaddrs, so it never needs glibc's NSS modules, which the image does not contain.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
target=x86_64-unknown-linux-gnu
image=${IMAGE:-lpiotia/mqtt}
binary_only=false

case "${1:-}" in
    "") ;;
    --binary-only) binary_only=true ;;
    *)
        echo "usage: $0 [--binary-only]" >&2
        exit 2
        ;;
esac

# Compiles the binary with glibc linked statically. With --target, RUSTFLAGS applies to the
# binary and its dependencies but not to build scripts and proc macros, which stay dynamic.
#
# The getrandom crate (0.3, 0.4) finds glibc's getrandom() with dlsym by default, which
# returns nothing in a static binary, and then falls back to reading /dev/urandom. The
# linux_getrandom backend calls the statically linked getrandom() instead, so the broker
# needs no /dev to create keys and serial numbers.
build_binary() {
    (
        cd "$repo"
        RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static --cfg getrandom_backend=\"linux_getrandom\"" \
            cargo build --release --target "$target" -p lpiotia-mqtt --bin lpiotia-mqtt >&2
    )
}

# Fails unless the ELF file at $1 has no program interpreter and no shared library
# dependency, which is what running FROM scratch requires.
check_static() {
    local binary=$1
    echo "file: $(file -b "$binary")" >&2
    local headers
    headers=$(readelf --program-headers --wide "$binary")
    if grep -q 'INTERP' <<<"$headers"; then
        echo "error: $binary has a program interpreter (dynamic loader); it would not start FROM scratch" >&2
        return 1
    fi
    local needed
    needed=$(readelf --dynamic --wide "$binary" | grep '(NEEDED)' || true)
    if [ -n "$needed" ]; then
        echo "error: $binary needs shared libraries; it would not start FROM scratch:" >&2
        echo "$needed" >&2
        return 1
    fi
    echo "ldd: $(ldd "$binary" 2>&1 | head -n 1 | sed 's/^[[:space:]]*//')" >&2
}

binary="${CARGO_TARGET_DIR:-$repo/target}/$target/release/lpiotia-mqtt"
build_binary
check_static "$binary"
if [ "$binary_only" = true ]; then
    echo "$binary"
    exit 0
fi

version=$("$binary" --version | awk '{print $2}')
revision=$(git -C "$repo" rev-parse HEAD 2>/dev/null || echo unknown)
source_url=${IMAGE_SOURCE:-$(git -C "$repo" remote get-url origin 2>/dev/null || true)}

context=$(mktemp -d "${TMPDIR:-/tmp}/lpiotia-mqtt-image.XXXXXX")
trap 'rm -rf "$context"' EXIT
install -m 0755 "$binary" "$context/lpiotia-mqtt"
install -d -m 0700 "$context/rootfs/data"
install -d -m 0755 "$context/rootfs/config" "$context/rootfs/etc"
ln -s /config "$context/rootfs/etc/lpiotia-mqtt"

docker build \
    --file "$repo/docker/Dockerfile" \
    --build-arg "VERSION=$version" \
    --build-arg "REVISION=$revision" \
    --build-arg "SOURCE=$source_url" \
    --tag "$image:$version" \
    --tag "$image:latest" \
    "$context"
echo "built $image:$version and $image:latest"
