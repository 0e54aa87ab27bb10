#!/bin/sh
# Runs every test of filtermail. Installs the tools the tests use with
# apt-get when they are missing (needs root for that): the Debian packages
# postfix (Postfix, without a configuration of its own), gnupg (GnuPG), sq
# (Sequoia), chromium (Chromium), systemd (systemd-analyze), opendkim and
# opendkim-tools (OpenDKIM signs test mail), python3-dkim (dkimpy signs
# too), openssl (Ed25519 keys), faketime (expired signatures), git
# (clones for the release build), util-linux and iproute2 (a network
# namespace and an unprivileged user for the release binary: unshare,
# setpriv, ip) and passwd (useradd, userdel).
set -eu
cd "$(dirname "$0")/.."

missing=""
command -v postfix >/dev/null 2>&1 || missing="$missing postfix"
command -v gpg >/dev/null 2>&1 || missing="$missing gnupg"
command -v sq >/dev/null 2>&1 || missing="$missing sq"
command -v chromium >/dev/null 2>&1 || missing="$missing chromium"
command -v systemd-analyze >/dev/null 2>&1 || missing="$missing systemd"
command -v opendkim >/dev/null 2>&1 || missing="$missing opendkim"
command -v opendkim-genkey >/dev/null 2>&1 || missing="$missing opendkim-tools"
command -v dkimsign >/dev/null 2>&1 || missing="$missing python3-dkim"
command -v openssl >/dev/null 2>&1 || missing="$missing openssl"
command -v faketime >/dev/null 2>&1 || missing="$missing faketime"
command -v git >/dev/null 2>&1 || missing="$missing git"
command -v unshare >/dev/null 2>&1 && command -v setpriv >/dev/null 2>&1 || missing="$missing util-linux"
command -v ip >/dev/null 2>&1 || missing="$missing iproute2"
command -v useradd >/dev/null 2>&1 && command -v userdel >/dev/null 2>&1 || missing="$missing passwd"
if [ -n "$missing" ]; then
	echo "Installing:$missing"
	apt-get update -qq
	# Postfix without a configuration of its own: the tests run private
	# instances.
	echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
fi

go vet ./...
go test -count=1 ./...
