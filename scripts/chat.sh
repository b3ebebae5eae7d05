#!/usr/bin/env bash
# Chat with Bob in llamapy-cli's interactive mode: a transcript prompt, "User:" as the reverse prompt that hands
# the turn to you, a context that shifts instead of filling up (the prompt's first 48 tokens stay).
# Type a line and press Return; Ctrl+C interrupts Bob, Ctrl+D ends the chat.
#
#   scripts/chat.sh                    # the default model (SmolLM2-135M-Instruct)
#   MODEL=model.gguf scripts/chat.sh -t 4
#
# Extra arguments go to llamapy-cli. Without a terminal it reads the turns from stdin, one per line.
set -euo pipefail
cd "$(dirname "$0")/.."

cli=${LLAMAPY_CLI:-.venv/bin/llamapy-cli}
model_args=()
[ -n "${MODEL:-}" ] && model_args=(-m "$MODEL")

exec "$cli" "${model_args[@]}" -no-cnv -c 512 -b 1024 -n 256 --keep 48 --context-shift --repeat-penalty 1.0 \
    -i -r "User:" --in-prefix " " -f prompts/chat-with-bob.txt "$@"
