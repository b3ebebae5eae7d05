#!/usr/bin/env bash
# A chat that survives restarts. The conversation is a transcript file and its evaluated state a prompt cache
# beside it, so each turn (and the first turn of a later run) evaluates only the new text.
#
#   scripts/chat-persistent.sh                       # default model; saved in ~/.cache/llamapy/chat
#   CHAT_SAVE_DIR=./mychat USER_NAME=Ann AI_NAME=Sam MODEL=model.gguf scripts/chat-persistent.sh -t 4
#
# Each turn appends "USER: your line" and "AI:" to the transcript; llamapy-cli continues it with
# --prompt-cache FILE --prompt-cache-all until the model starts the user's next line (-r "USER:") or has
# written N_PREDICT tokens, and the reply goes into the transcript. When the transcript outgrows the context,
# its oldest lines after the opening (the prompt template) are dropped. Ctrl+D or the end of stdin stops;
# run the script again to go on. Extra arguments go to llamapy-cli (e.g. --temp 0); llamapy-cli's log of the
# last turn is in CHAT_SAVE_DIR/last-turn.log.
set -euo pipefail
cd "$(dirname "$0")/.."

cli=${LLAMAPY_CLI:-.venv/bin/llamapy-cli}
dir=${CHAT_SAVE_DIR:-$HOME/.cache/llamapy/chat}
user=${USER_NAME:-User}
ai=${AI_NAME:-Assistant}
template=${PROMPT_TEMPLATE:-prompts/chat.txt}
n_predict=${N_PREDICT:-128}
n_ctx=${N_CTX:-2048}
model_args=()
[ -n "${MODEL:-}" ] && model_args=(-m "$MODEL")

transcript=$dir/transcript.txt
cache=$dir/prompt-cache.bin
log=$dir/last-turn.log
mkdir -p "$dir"

if [ ! -s "$transcript" ]; then      # a new chat: the template with the names and the date filled in
    sed -e "s/\[\[USER_NAME\]\]/$user/g" -e "s/\[\[AI_NAME\]\]/$ai/g" \
        -e "s/\[\[DATE_TIME\]\]/$(date '+%Y-%m-%d %H:%M')/g" "$template" > "$transcript"
    rm -f "$cache"
fi
n_opening=$(wc -l < "$template")
cat "$transcript"

# one turn: continue the transcript; on "prompt is too long", drop the oldest exchange and try again
continue_transcript() {
    local out
    while true; do
        if out=$("$cli" "${model_args[@]}" -no-cnv -c "$n_ctx" -n "$n_predict" -f "$transcript" \
                 --prompt-cache "$cache" --prompt-cache-all -r "$user:" --no-display-prompt "$@" 2>"$log"); then
            printf '%s' "$out"
            return 0
        fi
        if ! grep -q "prompt is too long" "$log" || [ "$(wc -l < "$transcript")" -le $((n_opening + 2)) ]; then
            cat "$log" >&2
            return 1
        fi
        sed -i "$((n_opening + 1)),$((n_opening + 2))d" "$transcript"
    done
}

read_args=()
[ -t 0 ] && read_args=(-e)      # line editing at a terminal
while IFS= read -r "${read_args[@]}" -p "$user: " line; do
    [ -z "$line" ] && continue
    [ -t 0 ] || printf '%s: %s\n' "$user" "$line"
    printf '%s: %s\n%s:' "$user" "$line" "$ai" >> "$transcript"
    reply=$(continue_transcript "$@")
    reply=${reply%"$user:"}                     # it stopped where the user's next line begins
    reply=$(printf '%s' "$reply" | sed -e 's/[[:space:]]*$//')
    printf '%s\n' "$reply" >> "$transcript"
    printf '%s:%s\n' "$ai" "$reply"
done
echo
