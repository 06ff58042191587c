#!/bin/sh
# Check a Zero-Trust MySQL evidence bundle offline with only openssl (3.0+), sha256sum,
# tar, find, sort, cut and diff. Usage: sh offline-verify.sh BUNDLE.tar.gz YOUR-CA.pem
# Exit 0 only when every step passes; the first failing step stops it (set -e).
set -eu
bundle=$(realpath "$1")
ca=$(realpath "$2")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir "$work/x"
tar -xzf "$bundle" -C "$work/x"
cd "$work/x/bundle"
# 1. The signer's certificate chains to YOUR CA (intermediates, if any, follow it in signer.pem).
openssl verify -CAfile "$ca" -untrusted signer.pem signer.pem
# 2. The verifying key is the one that certificate certifies, never signer.pub.pem on its own say-so.
openssl x509 -in signer.pem -noout -pubkey > "$work/certified.pub.pem"
# 3. The Ed25519 signature over the manifest, under the certified key.
openssl pkeyutl -verify -pubin -inkey "$work/certified.pub.pem" -rawin -in MANIFEST.sha256 -sigfile MANIFEST.sha256.sig
# 4. Every listed file has its recorded SHA-256 (a missing file fails too).
sha256sum --strict --quiet -c MANIFEST.sha256
# 5. Nothing was added: the archive holds exactly the listed files plus the manifest and its signature.
cd "$work/x"
find . ! -type d -printf '%P\n' | LC_ALL=C sort > "$work/present"
{ cut -c67- bundle/MANIFEST.sha256 | sed 's|^|bundle/|'; printf 'bundle/MANIFEST.sha256\nbundle/MANIFEST.sha256.sig\n'; } |
    LC_ALL=C sort > "$work/listed"
diff "$work/listed" "$work/present"
echo "bundle verified: signer certified by $2, signature valid, every file matches MANIFEST.sha256, none added"
