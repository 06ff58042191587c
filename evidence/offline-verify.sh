#!/bin/sh
# Check a Zero-Trust MySQL evidence bundle offline with only openssl (3.0+) and GNU coreutils,
# tar, gzip, awk, grep and sed, by the rules of evidence/README.md ("Verification rules"):
#   sh offline-verify.sh BUNDLE.tar.gz EVIDENCE-CA.pem [--crl CRL.pem] [--tsa-ca TSA-CA.pem]
# Exit 0 verified; 1 failed (one "FAILED: ..." line naming the problem); 2 usage.
set -eu
umask 077
LC_ALL=C
export LC_ALL
MAX_GZ=67108864 MAX_TAR=268435456 MAX_MEMBERS=10000 MAX_SMALL=1048576 MAX_CHAIN=5
NAME='[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*'
usage() { printf 'offline-verify: %s\n' "$1" >&2; exit 2; }
fail() { printf 'FAILED: %s\n' "$1"; exit 1; }
absolute() { case $1 in /*) printf '%s\n' "$1" ;; *) printf '%s/%s\n' "$PWD" "$1" ;; esac; }
[ $# -ge 2 ] || usage "usage: offline-verify.sh BUNDLE.tar.gz EVIDENCE-CA.pem [--crl CRL.pem] [--tsa-ca TSA-CA.pem]"
bundle=$(absolute "$1") ca=$(absolute "$2") crl='' tsaca=''
shift 2
while [ $# -gt 0 ]; do
    case $1 in
        --crl) [ $# -ge 2 ] || usage "--crl needs a file"; crl=$(absolute "$2"); shift 2 ;;
        --tsa-ca) [ $# -ge 2 ] || usage "--tsa-ca needs a file"; tsaca=$(absolute "$2"); shift 2 ;;
        *) usage "unknown argument: $1" ;;
    esac
done
tsaca=${tsaca:-$ca}
for f in "$ca" "$tsaca" ${crl:+"$crl"}; do [ -f "$f" ] && [ -r "$f" ] || usage "cannot read $f"; done
# The archive: a non-empty regular gzip file (never a FIFO or a device), bounded in size.
[ -e "$bundle" ] || usage "no bundle at $bundle"
[ ! -d "$bundle" ] || usage "$bundle is a directory; give the bundle file (tar.gz)"
[ -f "$bundle" ] || usage "$bundle is not a regular file (a device, FIFO or socket), not a bundle"
size=$(stat -L -c %s "$bundle")
[ "$size" -gt 0 ] || usage "$bundle is empty, not a bundle"
[ "$size" -le $MAX_GZ ] || usage "$bundle is larger than $((MAX_GZ / 1048576)) MiB, not an evidence bundle"
[ "$(head -c 2 "$bundle" | od -An -tx1 | tr -d ' \n')" = 1f8b ] || usage "$bundle is not a gzip file, not a bundle (tar.gz)"
# The work folder's name is known before it exists, so an INT or TERM at any moment removes it.
work="${TMPDIR:-/tmp}/ztm-offline-verify.$$.$(od -An -N8 -tx8 /dev/urandom | tr -d ' ')"
trap 'rm -rf "$work"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
mkdir -m 700 "$work"
# Inflate at most MAX_TAR+1 bytes (a gzip bomb stops here), then check the whole gzip stream.
{ gzip -dc < "$bundle" 2>/dev/null || true; } | head -c $((MAX_TAR + 1)) > "$work/b.tar"
[ "$(stat -c %s "$work/b.tar")" -le $MAX_TAR ] || fail "$bundle: unpacks to more than $((MAX_TAR / 1048576)) MiB (size limit; a gzip bomb?)"
gzip -t < "$bundle" 2>/dev/null || fail "$bundle: damaged: not a valid gzip stream (truncated or unexpected data after it)"
# Members: regular files and folders under bundle/ only, plain names, none twice, data as long as its size.
tar --quoting-style=escape -tf "$work/b.tar" > "$work/names" 2>/dev/null || fail "$bundle: damaged: not a readable tar inside the gzip"
tar --quoting-style=escape --numeric-owner -tvRf "$work/b.tar" > "$work/listing" 2>/dev/null || fail "$bundle: damaged: not a readable tar inside the gzip"
[ "$(wc -l < "$work/names")" -le $MAX_MEMBERS ] || fail "$bundle: more than $MAX_MEMBERS members (member count limit)"
bad=$(grep -Ev "^bundle(/[A-Za-z0-9_.-]+)*/?\$" "$work/names" | head -n 1 | tr -c 'A-Za-z0-9/._\\-' '?') || true
[ -z "$bad" ] || fail "$bundle: member '$bad': bad name (only bundle/ and letters, digits, '.', '_', '-')"
! grep -Eq '(^|/)\.\.?(/|$)' "$work/names" || fail "$bundle: a member has a bad name ('.' or '..')"
dup=$(sed 's|/$||' "$work/names" | sort | uniq -d | head -n 1)
[ -z "$dup" ] || fail "$bundle: member $dup: duplicate member (a second copy could hide the signed one)"
awk -v blocks=$(($(stat -c %s "$work/b.tar") / 512)) -v bundle="$bundle" '
    function judge(next_block) {
        if (pending != "" && next_block < need) { print "FAILED: " bundle ": member " pending ": not a regular file (sparse file)"; exit 1 }
        pending = "" }
    $3 == "**" { judge($2 + 0); done = 1; next }
    { type = substr($3, 1, 1); name = $NF; judge($2 + 0)
      if (type == "d") next
      if (type != "-") {
          kind = type == "l" ? "symlink" : type == "h" ? "hardlink" : type == "p" ? "FIFO" : (type == "c" || type == "b") ? "device" : "special entry"
          print "FAILED: " bundle ": member " name ": not a regular file (" kind ")"; exit 1 }
      if (name == "bundle") { print "FAILED: " bundle ": member bundle: not a regular file expected (bundle/ is the folder)"; exit 1 }
      pending = name; need = $2 + 1 + int(($5 + 511) / 512) }
    END { if (!done) judge(blocks) }' "$work/listing"
awk '!/\/$/ { file[$0] = 1; names[NR] = $0 }
     END { for (i in names) { n = split(names[i], part, "/"); p = part[1]
               for (j = 2; j < n; j++) { if (p in file) { print "FAILED: member " p ": duplicate member (a file and a folder of the same name)"; exit 1 }
                                        p = p "/" part[j] }
               if (n > 1 && p in file && p != names[i]) { print "FAILED: member " p ": duplicate member (a file and a folder of the same name)"; exit 1 } } }' "$work/names"
mkdir "$work/x"
tar -xf "$work/b.tar" -C "$work/x" --no-same-owner --no-same-permissions --delay-directory-restore 2>/dev/null ||
    fail "$bundle: damaged: the tar does not unpack"
chmod -R u+rwX "$work/x"
[ -z "$(find "$work/x" ! -type f ! -type d | head -n 1)" ] || fail "$bundle: a member is not a regular file"
[ -d "$work/x/bundle" ] || fail "MANIFEST.sha256 is missing: the bundle is not signed"
cd "$work/x/bundle"
for f in MANIFEST.sha256 MANIFEST.sha256.sig MANIFEST.sha256.tsr signer.pem signer.pub.pem; do
    [ ! -f "$f" ] || [ "$(stat -c %s "$f")" -le $MAX_SMALL ] ||
        fail "$bundle: member bundle/$f: larger than $((MAX_SMALL / 1024)) KiB (size limit)"
done
for f in MANIFEST.sha256 MANIFEST.sha256.sig; do [ -f "$f" ] || fail "$f is missing: the bundle is not signed"; done
# The manifest is canonical: ASCII lines '<sha256>  <path>', LF only, sorted, unique, plain relative paths.
[ "$(tail -c 1 MANIFEST.sha256 | od -An -tx1 | tr -d ' \n')" = 0a ] ||
    fail "MANIFEST.sha256: not canonical: lines must end with LF (no CR, final LF)"
! grep -Evq "^[0-9a-f]{64}  $NAME\$" MANIFEST.sha256 || fail "MANIFEST.sha256: not canonical: a line is not '<sha256>  <path>' with a plain relative path"
! grep -Eq '  (.*/)?\.\.?(/|$)|  MANIFEST\.sha256(\.sig|\.tsr)?$' MANIFEST.sha256 ||
    fail "MANIFEST.sha256: not canonical: a line is not '<sha256>  <path>' with a plain relative path"
cut -c 67- MANIFEST.sha256 > "$work/listed"
[ -z "$(uniq -d "$work/listed")" ] || fail "MANIFEST.sha256: not canonical: a path is listed again (duplicate path)"
sort -c -u "$work/listed" 2>/dev/null || fail "MANIFEST.sha256: not canonical: the paths are not sorted"
# Trusted time: the RFC 3161 token over the signature, when present, dates the signature.
attime='' when='now (no timestamp token)'
if [ -f MANIFEST.sha256.tsr ]; then
    # The token's time is signed; the TSA's certificate is judged at that time, so a token outlives it.
    stamp=$(openssl ts -reply -in MANIFEST.sha256.tsr -text 2>/dev/null | sed -n 's/^Time stamp: \(.*\) GMT$/\1/p' | sed 's/\.[0-9]* / /')
    [ -n "$stamp" ] && attime=$(date -u -d "$stamp UTC" +%s 2>/dev/null) ||
        fail "MANIFEST.sha256.tsr: the timestamp token does not verify over MANIFEST.sha256.sig (no readable time)"
    openssl ts -verify -data MANIFEST.sha256.sig -in MANIFEST.sha256.tsr -CAfile "$tsaca" -attime "$attime" > /dev/null 2>&1 ||
        fail "MANIFEST.sha256.tsr: the timestamp token does not verify over MANIFEST.sha256.sig (TSA CA ${tsaca##*/})"
    when="the timestamp $(date -u -d "@$attime" +%Y-%m-%dT%H:%M:%SZ)"
fi
# The signer: signer.pem holds certificates only; its leaf chains to YOUR CA at that time and is a signer's.
[ -f signer.pem ] || fail "signer.pem is missing: the bundle carries no signer certificate to check against the CA"
[ "$(tail -c 1 signer.pem | od -An -tx1 | tr -d ' \n')" = 0a ] && awk -v max=$MAX_CHAIN '
    inside == 0 && $0 == "-----BEGIN CERTIFICATE-----" { inside = 1; body = 0; next }
    inside == 1 && /^[A-Za-z0-9+\/=]+$/ && length($0) <= 76 { body++; next }
    inside == 1 && body > 0 && $0 == "-----END CERTIFICATE-----" { inside = 0; certs++; next }
    { bad = 1; exit }
    END { exit (bad || inside || certs < 1 || certs > max) }' signer.pem ||
    fail "signer.pem must hold certificates only (PEM CERTIFICATE blocks, LF line ends, nothing else such as a PUBLIC KEY block)"
openssl x509 -in signer.pem -out "$work/leaf.pem" 2>/dev/null || fail "signer.pem: a CERTIFICATE block is not a readable certificate"
openssl verify -x509_strict ${attime:+-attime "$attime"} -CAfile "$ca" -untrusted signer.pem "$work/leaf.pem" > "$work/v" 2>&1 ||
    fail "signer.pem: not a valid signer certified by the CA at $when: $(grep -m 1 'error' "$work/v" | tr -c '[:print:]\n' '?')"
openssl x509 -in "$work/leaf.pem" -noout -ext basicConstraints,keyUsage,extendedKeyUsage > "$work/ext" 2>/dev/null || true
! grep -q 'CA:TRUE' "$work/ext" || fail "signer.pem: not a valid signer: the signer certificate is a CA certificate"
awk '/^X509v3 Key Usage/ { s = 1; next } /^X509v3/ { s = 0 } s && /Digital Signature/ { ok = 1 } END { exit !ok }' "$work/ext" ||
    fail "signer.pem: not a valid signer: the signer certificate's key usage lacks digitalSignature"
awk '/^X509v3 Extended Key Usage/ { s = 1; next } /^X509v3/ { s = 0 } s && /Code Signing/ { ok = 1 } END { exit !ok }' "$work/ext" ||
    fail "signer.pem: not a valid signer: the signer certificate lacks the code-signing extended key usage"
openssl x509 -in "$work/leaf.pem" -noout -pubkey > "$work/signer.pub.pem"
openssl pkey -pubin -in "$work/signer.pub.pem" -noout -text 2>/dev/null | head -n 1 | grep -q '^ED25519 Public-Key' ||
    fail "signer.pem: the signer certificate does not certify an Ed25519 key"
if [ -n "$crl" ]; then
    openssl verify -no_check_time -crl_check -CRLfile "$crl" -CAfile "$ca" -untrusted signer.pem "$work/leaf.pem" > "$work/v" 2>&1 || {
        grep -q 'certificate revoked' "$work/v" && fail "signer.pem: the signer certificate is revoked in the CRL"
        fail "the CRL is not signed by the signer certificate's issuer: cannot check revocation"; }
fi
# The Ed25519 signature over the manifest, under the certified key (signer.pub.pem is informational only).
openssl pkeyutl -verify -pubin -inkey "$work/signer.pub.pem" -rawin -in MANIFEST.sha256 -sigfile MANIFEST.sha256.sig > /dev/null 2>&1 ||
    fail "MANIFEST.sha256.sig: the signature does not match MANIFEST.sha256 under the signer's key (manifest altered or signed with another key)"
# Every listed file is present, nothing else is, and every file has its recorded SHA-256.
find . -type f | sed 's|^\./||' | grep -Ev '^MANIFEST\.sha256(\.sig|\.tsr)?$' | sort > "$work/present" || true
missing=$(comm -23 "$work/listed" "$work/present" | head -n 1)
[ -z "$missing" ] || fail "$missing: listed in the manifest but missing from the bundle"
added=$(comm -13 "$work/listed" "$work/present" | head -n 1)
[ -z "$added" ] || fail "$added: present in the bundle but not in the manifest (added)"
changed=$(sha256sum --strict -c MANIFEST.sha256 2>/dev/null | grep -v ': OK$' | head -n 1 | sed 's/: FAILED.*$//') || true
[ -z "$changed" ] || fail "$changed: content changed (SHA-256 differs from the manifest)"
printf "verified: %s files; signer certified by %s at %s; signature and every hash match, none missing or added\n" "$(wc -l < "$work/listed")" "${ca##*/}" "$when"
