#!/usr/bin/env bash
# Installs what skep needs on Debian/Ubuntu, when it is missing:
# Tesseract 5 with its C API, English and orientation data, Leptonica,
# clang (for the leptess bindings), Poppler's programs (pdfinfo, pdftotext,
# pdftoppm: how workers read PDFs) and qpdf (searchable PDFs), the DejaVu
# fonts the test corpus is drawn with, jq, curl, and img2pdf (tests only).
# Safe to run again; does nothing when everything is there.
set -euo pipefail

packages=(
  libtesseract-dev libleptonica-dev tesseract-ocr tesseract-ocr-eng tesseract-ocr-osd
  poppler-utils qpdf
  clang libclang-dev pkg-config fonts-dejavu-core
  jq curl # the swarm end-to-end and API tests read JSON and call HTTP with them
  img2pdf # a test makes a scanned PDF "made elsewhere" with it
  docker-compose # tests/swarm/compose-workers.sh runs the remote-worker compose file
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

echo "installing: ${missing[*]}" >&2
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "need root or sudo to install: ${missing[*]}" >&2; exit 1; }
  sudo="sudo"
fi
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
