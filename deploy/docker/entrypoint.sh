#!/bin/bash
# The images' entrypoint: `celer serve` with vLLM's flags from the command line, as vllm/vllm-openai runs `vllm serve`,
# and every flag also settable as a CELER_* variable for orchestrators that configure containers through the
# environment: CELER_MAX_MODEL_LEN=4096 is --max-model-len 4096 (name lower-cased, _ to -; booleans take true/false).
# A flag given on the command line wins over its variable (as in TGI's launcher), so the image's own defaults
# (CELER_HOST, CELER_PORT, CELER_DEVICE) never collide with an operator's --host or --port.
set -euo pipefail

# CELER_* variables the program reads itself, which are not flags. CELER_API_KEY stays out of the arguments, where
# `ps` and /proc/1/cmdline would show the key.
program_variables=" CELER_API_KEY CELER_CACHE_DIR CELER_COMMIT CELER_CUDA_PDL CELER_CUDA_PROFILE_STEPS CELER_CUDA_SYNC CELER_IMAGE_FETCH_TIMEOUT "
# Flags that take several values: the variable's value is split on whitespace, each value given with its own flag.
list_flags=" allowed-headers allowed-media-domains allowed-methods allowed-origins cuda-graph-sizes model "

given_on_command_line() {
  local flag=$1 argument
  shift
  for argument in "$@"; do
    [[ $argument == "$flag" || $argument == "$flag="* ]] && return 0
  done
  return 1
}

# The flags `celer serve --help` lists (aliases too). A variable that names none is refused here by name: passed on, the
# parser would take an unknown --flag for the MODEL argument and report only its value.
serve_flags=""

arguments=()
for name in $(compgen -e); do
  [[ $name == CELER_* && $program_variables != *" $name "* ]] || continue
  value=${!name}
  [[ -n $value ]] || continue
  # Kubernetes gives each pod variables for every Service in its namespace; one named celer or celer-* makes
  # CELER*_SERVICE_HOST, CELER*_SERVICE_PORT[_NAME], CELER*_PORT=tcp://IP:PORT and CELER*_PORT_8000_TCP[_PROTO|_PORT|_ADDR].
  if [[ $name == *_SERVICE_HOST || $name == *_SERVICE_PORT || $name == *_SERVICE_PORT_* || $name =~ _PORT_[0-9]+_(TCP|UDP|SCTP)
        || $value =~ ^(tcp|udp|sctp):// ]]; then
    continue
  fi
  flag=${name#CELER_}
  flag=--${flag,,}
  flag=${flag//_/-}
  if [[ -z $serve_flags ]]; then
    serve_flags=" $(celer serve --help | grep -E '^  -' | sed -E 's/^ +//; s/ <.*| {2,}.*//' | grep -oE -- '--[a-z0-9-]+' | tr '\n' ' ') "
  fi
  if [[ $serve_flags != *" $flag "* ]]; then
    echo "celer-entrypoint: $name names no flag of celer serve ($flag); see celer serve --help" >&2
    exit 2
  fi
  given_on_command_line "$flag" "$@" && continue
  if [[ $list_flags == *" ${flag#--} "* ]]; then
    read -ra values <<< "$value"
    for item in "${values[@]}"; do
      arguments+=("$flag" "$item")
    done
  else
    arguments+=("$flag" "$value")
  fi
done

# exec: celer becomes PID 1 and receives the runtime's SIGTERM itself, so in-flight requests drain (--shutdown-timeout).
exec celer serve "${arguments[@]}" "$@"
