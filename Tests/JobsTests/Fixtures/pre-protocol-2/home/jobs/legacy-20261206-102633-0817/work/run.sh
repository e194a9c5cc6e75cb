echo "attempt with args: $*"
mkdir -p "$FERRY_OUTPUT/run/checkpoints/last"
echo weights > "$FERRY_OUTPUT/run/checkpoints/last/model.safetensors"
echo '{"event":"checkpoint","time":1,"kind":"last","path":"run/checkpoints/last","epoch":1}' >> "$FERRY_EVENTS"
case "$*" in *--resume*) exit 0 ;; *) exit 1 ;; esac
