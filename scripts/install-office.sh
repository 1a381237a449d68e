#!/bin/sh
# Installs LibreOffice Calc (headless, without the GUI when Debian has that variant), the
# poppler tools and a CJK font, for the test that renders the XLSX tables to PDF and reads
# the words' boxes back. Idempotent; needs root (or sudo) only when it installs.
set -eu
if command -v soffice >/dev/null 2>&1 && command -v pdftotext >/dev/null 2>&1 && command -v pdftoppm >/dev/null 2>&1 \
    && fc-list :lang=zh 2>/dev/null | grep -q .; then
    exit 0
fi
SUDO=""
if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi
$SUDO apt-get update -qq
CALC=libreoffice-calc
if apt-cache show libreoffice-calc-nogui >/dev/null 2>&1; then CALC=libreoffice-calc-nogui; fi
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "$CALC" poppler-utils fonts-noto-cjk
