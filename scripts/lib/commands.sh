# shellcheck shell=bash
# Running the commands that change something, the one way every script does it: each is shown as
# "+ command", shell-quoted on one line, and run unless this is a dry run. A dry run prints the
# line on stdout, where it is the plan; a real run prints it on stderr, where it traces what is
# being done.
#
# Sourced by scripts/images.sh and scripts/lib/cluster.sh. It defines functions and changes nothing
# by itself; the script sets DRY_RUN (1: a dry run, 0: a real one) before it calls them. Only bash
# builtins are used, so that scripts/images.sh --dry-run works with nothing but bash on PATH, on
# the bash 3.2 of macOS too.

# One word as a shell reads it: bare when that is safe, else in single quotes. (printf %q would do
# too, but it backslash-escapes commas, which makes --platform a,b hard to read.)
quote_word() {
    local safe_re='^[A-Za-z0-9_@%+=:,./-]+$' sq="'" escaped_sq="'\\''"
    if [[ "$1" =~ $safe_re ]]; then
        printf '%s' "$1"
    else
        printf "'%s'" "${1//$sq/$escaped_sq}"
    fi
}

# quote_command WORD...: the words as one line a shell reads back as them.
quote_command() {
    local quoted="" word
    for word in "$@"; do
        quoted="${quoted:+$quoted }$(quote_word "$word")"
    done
    printf '%s' "$quoted"
}

# The "+ command" line: on stdout in a dry run, on stderr in a real run.
show() {
    if ((DRY_RUN)); then
        printf '+ %s\n' "$1"
    else
        printf '+ %s\n' "$1" >&2
    fi
}

# run COMMAND...: a command that changes something. Shown, and run unless this is a dry run.
run() {
    show "$(quote_command "$@")"
    if ((!DRY_RUN)); then
        "$@"
    fi
}

# run_pipe COMMAND... '|' COMMAND...: the same for a pipeline of two commands.
run_pipe() {
    local -a left=() right=()
    local word piped=0
    for word in "$@"; do
        if ((!piped)) && [[ "$word" == "|" ]]; then
            piped=1
        elif ((piped)); then
            right+=("$word")
        else
            left+=("$word")
        fi
    done
    show "$(quote_command "${left[@]}") | $(quote_command "${right[@]}")"
    if ((!DRY_RUN)); then
        "${left[@]}" | "${right[@]}"
    fi
}

# run_write FILE TEXT: write TEXT and a newline to FILE (shown as the printf that does it).
run_write() {
    show "$(quote_command printf '%s\n' "$2") > $(quote_word "$1")"
    if ((!DRY_RUN)); then
        printf '%s\n' "$2" >"$1"
    fi
}

# DRY_RUN as the environment gives it: 1/true/yes, or 0/false/no/empty.
dry_run_from_env() {
    case "${DRY_RUN:-0}" in
        1 | true | yes) DRY_RUN=1 ;;
        0 | false | no | "") DRY_RUN=0 ;;
        *) usage_error "DRY_RUN must be 1 or 0, not '$DRY_RUN'" ;;
    esac
}
