
function _rpc () {
  COMPREPLY=()
  local __raw_current="${COMP_WORDS[COMP_CWORD]}"
  local current="" __quote="" __char __next __index __quote_offset=0
  local __file_mode=0
  if [[ $(type -t compopt) == builtin ]]; then
    compopt +o filenames 2>/dev/null || true
  fi
  # Dequote the shell word without evaluating filename contents.  Readline
  # returns escaped words after Tab, and users may start with an open quote.
  for ((__index=0; __index<${#__raw_current}; __index++)); do
    __char="${__raw_current:__index:1}"
    if [[ -z "$__quote" ]]; then
      case "$__char" in
        \\) ((++__index)); current+="${__raw_current:__index:1}" ;;
        \'|\") __quote="$__char"; __quote_offset=${#current} ;;
        *) current+="$__char" ;;
      esac
    elif [[ "$__quote" == "'" ]]; then
      if [[ "$__char" == "'" ]]; then
        __quote=""
      else
        current+="$__char"
      fi
    else
      case "$__char" in
        \") __quote="" ;;
        \\)
          __next="${__raw_current:__index+1:1}"
          case "$__next" in
            \$|\`|\"|\\)
              ((++__index)); current+="$__next" ;;
            *) current+="$__char" ;;
          esac ;;
        *) current+="$__char" ;;
      esac
    fi
  done
  local __tilde_pattern='^(~[a-zA-Z0-9_.+-]*)(/.*)?$'
  local __tilde_glob_pattern='^(~[a-zA-Z0-9_.+-]*)(/.*)?$'
  local prev=("${COMP_WORDS[@]:1:COMP_CWORD-1}")
  # Bash splits unquoted '=' at its default word breaks. Reassemble only
  # adjacent fragments, including further word breaks inside a joined value,
  # leaving whitespace-separated arguments intact.
  local __plain_current="$current" __remove="" __word __joined=0
  local __raw_joined_current="$__raw_current"
  local -a __raw_offsets=() __raw_quotes=()
  if [[ ${COMP_LINE+x} ]]; then
    local -a __words=()
    local __rest="$COMP_LINE" __previous="" __space __valid=1 __i __j=0
    local __shell_quote="" __shell_escape=0 __boundary=0 __previous_boundary=0 __scan __symbol __shell_dollar=0
    # Reconstruct the prefix at the cursor, leaving any suffix to Readline.
    if [[ ${COMP_POINT+x} ]]; then
      __rest="${COMP_LINE:0:COMP_POINT}"
    fi
    for ((__i=0; __i<=COMP_CWORD; __i++)); do
      __word="${COMP_WORDS[__i]}"
      __space=0
      while [[ "$__rest" == [[:space:]]* ]]; do
        __space=1
        __rest="${__rest:1}"
      done
      if (( __i == COMP_CWORD && ${#__rest} < ${#__word} )); then
        __word="${__word:0:${#__rest}}"
      fi
      if [[ "${__rest:0:${#__word}}" != "$__word" ]]; then
        __valid=0
        break
      fi
      # Quoted or escaped operators belong to words; bare operators separate
      # shell syntax even when no whitespace surrounds a redirection.
      __boundary=0
      for ((__scan=0; __scan<${#__word}; __scan++)); do
        __symbol="${__word:__scan:1}"
        if (( __shell_escape )); then
          __shell_escape=0
        elif [[ "$__shell_quote" == ansi ]]; then
          if [[ "$__symbol" == '\' ]]; then __shell_escape=1
          elif [[ "$__symbol" == "'" ]]; then __shell_quote=""; fi
        elif [[ "$__shell_quote" == "'" ]]; then
          [[ "$__symbol" == "'" ]] && __shell_quote=""
        elif [[ "$__symbol" == '\' ]]; then
          __shell_escape=1
        elif [[ -n "$__shell_quote" ]]; then
          [[ "$__symbol" == "$__shell_quote" ]] && __shell_quote=""
        else
          case "$__symbol" in
            "'")
              if (( __shell_dollar )); then __shell_quote=ansi
              else __shell_quote="'"; fi ;;
            '"') __shell_quote='"' ;;
            '$') __shell_dollar=1 ;;
            '>'|'<'|'|'|'&'|';'|'('|')') __boundary=1 ;;
          esac
        fi
        [[ "$__symbol" == '$' && -z "$__shell_quote" ]] || __shell_dollar=0
      done
      if (( __i > 1 && !__space && !__boundary && !__previous_boundary )) &&
          { [[ -n "$__word" && -z "${__word//=/}" ]] ||
            [[ -n "$__previous" && -z "${__previous//=/}" ]] ||
            [[ "${__words[__j-1]}" == [-/+]* ]] ||
            [[ "$__word" == =* && "${__words[__j-1]}" == [-/+]* ]]; }; then
        __words[__j-1]+="$__word"
      else
        __words[__j]="$__word"
        ((++__j))
      fi
      __rest="${__rest:${#__word}}"
      __previous="$__word"
      __previous_boundary=$__boundary
    done
    if (( __valid )); then
      current="${__words[__j-1]}"
      __raw_joined_current="$current"
      prev=("${__words[@]:1:__j-2}")
      # Bash passes the fragment Readline will replace as the second argument,
      # which is empty when the cursor follows a word-break character.
      if [[ ${2+x} ]]; then
        __remove="${current:0:${#current}-${#2}}"
      elif [[ -n "$__raw_current" && -z "${__raw_current//=/}" ]]; then
        __remove="$current"
      else
        __remove="${current:0:${#current}-${#__raw_current}}"
      fi
      # Decode joined shell words without evaluating substitutions. Keep quote
      # state across the reassembled fragments and decode the preserved prefix
      # separately so trimming uses the same representation as suggestions.
      __words[__j]="$__remove"
      local __decoded __decoded_option=0 __before_quote __join_quote __char __next __k __ansi __part __digits __code __join_quote_offset
      for ((__i=1; __i<=__j; __i++)); do
        __word="${__words[__i]}"
        __decoded=""; __join_quote=""; __join_quote_offset=0
        for ((__k=0; __k<${#__word}; __k++)); do
          __char="${__word:__k:1}"
          __before_quote="$__join_quote"
          if [[ -z "$__join_quote" ]]; then
            case "$__char" in
              '\') ((++__k)); __decoded+="${__word:__k:1}" ;;
              '$')
                if [[ "${__word:__k+1:1}" == "'" ]]; then
                  __join_quote=ansi; __join_quote_offset=${#__decoded}; __ansi=""; ((++__k))
                elif [[ "${__word:__k+1:1}" == '"' ]]; then
                  __join_quote='"'; __join_quote_offset=${#__decoded}; ((++__k))
                else __decoded+="$__char"; fi ;;
              "'"|'"') __join_quote="$__char"; __join_quote_offset=${#__decoded} ;;
              *) __decoded+="$__char" ;;
            esac
          elif [[ "$__join_quote" == ansi ]]; then
            if [[ "$__char" == "'" ]]; then
              printf -v __part '%b' "$__ansi"
              __decoded+="$__part"; __join_quote=""
            elif [[ "$__char" == '\' ]]; then
              ((++__k)); __next="${__word:__k:1}"
              case "$__next" in
                [0-7])
                  __digits="$__next"
                  while (( ${#__digits} < 3 )) && [[ "${__word:__k+1:1}" == [0-7] ]]; do
                    ((++__k)); __digits+="${__word:__k:1}"
                  done
                  __ansi+='\0'"$__digits" ;;
                c)
                  __next="${__word:__k+1:1}"
                  if [[ -n "$__next" && "$__next" != "'" ]]; then
                    ((++__k)); printf -v __code '%d' "'$__next"
                    if [[ "$__next" == '?' ]]; then __code=127
                    else __code=$((__code & 31)); fi
                    printf -v __part '\\%03o' "$__code"
                    __ansi+="$__part"
                  else __ansi+='\\c'; fi ;;
                "'"|'"'|'?') __ansi+="$__next" ;;
                *) __ansi+='\'"$__next" ;;
              esac
            else __ansi+="$__char"; fi
          elif [[ "$__join_quote" == "'" ]]; then
            if [[ "$__char" == "'" ]]; then __join_quote=""
            else __decoded+="$__char"; fi
          else
            case "$__char" in
              '"') __join_quote="" ;;
              '\')
                __next="${__word:__k+1:1}"
                case "$__next" in
                  '$'|'`'|'"'|'\') ((++__k)); __decoded+="$__next" ;;
                  *) __decoded+="$__char" ;;
                esac ;;
              *) __decoded+="$__char" ;;
            esac
          fi
          if (( __i == __j - 1 )) &&
              { [[ ! ${__raw_offsets[${#__decoded}]+x} ]] ||
                [[ -n "$__before_quote" && -z "$__join_quote" ]]; }; then
            __raw_offsets[${#__decoded}]=$((__k + 1))
            __raw_quotes[${#__decoded}]="$__join_quote"
          fi
        done
        if [[ "$__join_quote" == ansi ]]; then
          printf -v __part '%b' "$__ansi"
          __decoded+="$__part"
        fi
        # Shell syntax may precede the option prefix. Decide from decoded text,
        # retaining the existing native-file handling for non-option words.
        if [[ "$__decoded" == [-/+]* ]] || (( __i == __j && __decoded_option )); then
          if (( __i == __j - 1 )); then
            __decoded_option=1
            __quote="$__join_quote"
            [[ "$__quote" == ansi ]] && __quote="'"
            __quote_offset=$__join_quote_offset
          fi
          __words[__i]="$__decoded"
        fi
      done
      if [[ "${__words[__j-1]}" == -*=* || "${__words[__j-1]}" == /*:* || "${__words[__j-1]}" != "$__raw_current" ]]; then
        current="${__words[__j-1]}"
        __joined=1
      else
        current="$__plain_current"
        __words[__j]=""
      fi
      prev=("${__words[@]:1:__j-2}")
      __remove="${__words[__j]}"
    fi
  fi

  # Joined file directives retain the exact option prefix and metadata chosen
  # by the parser; do not infer option boundaries through speculative retries.
  local __protocol_current="$__raw_current"
  (( __joined )) && __protocol_current="$current"
  local -a __lines=() __replies=()
  local line __reply_prefix="" __file_current="$current" __literal=0
  while IFS= read -r line || [[ -n "$line" ]]; do
    [[ -n "$line" ]] && __lines+=("$line")
  done < <(rpc 'completions' 'bash' "${prev[@]}" "$__protocol_current" 2>/dev/null)
  for line in "${__lines[@]}"; do
    COMPREPLY=()
    __reply_prefix=""
    __file_current="$current"
    __literal=0
    # Protocol tags are case-sensitive even when nocasematch is enabled.
    if [ "${line:0:12}" = '__LITERAL__:' ]; then
      line="${line#__LITERAL__:}"
      __literal=1
    elif [ "${line:0:16}" = '__JOINED_FILE__:' ]; then
      line="${line#__JOINED_FILE__:}"
      __reply_prefix="${line%%:*}"
      __reply_prefix="${__reply_prefix//%3A/:}"
      __reply_prefix="${__reply_prefix//%25/%}"
      line="__FILE__:${line#*:}"
      __file_current="${current:${#__reply_prefix}}"
    fi
    local __raw_file_current="$__raw_current" __file_quote_offset=$__quote_offset __file_tilde_quoted=0
    if [[ -n "$__reply_prefix" ]]; then
      local __raw_offset="${__raw_offsets[${#__reply_prefix}]:-${#__reply_prefix}}"
      __raw_file_current="${__raw_joined_current:__raw_offset}"
      # Quoting may start before the option name and remain active at the
      # delimiter. Keep that context when deciding whether tilde is literal.
      if [[ -n "${__raw_quotes[${#__reply_prefix}]-}" ]]; then
        __file_tilde_quoted=1
      fi
      if (( __file_quote_offset >= ${#__reply_prefix} )); then
        __file_quote_offset=$((__file_quote_offset - ${#__reply_prefix}))
      fi
    fi
    if [ "$__literal" = 0 ] && [ "${line:0:9}" = '__FILE__:' ]; then
      # Parse file completion directive:
      # __FILE__:type:extensions:pattern:hidden[:insertion_prefix]
      local insertion_prefix="" __key_current="$__file_current"
      IFS=':' read -r _ type extensions pattern hidden insertion_prefix <<< "$line"
      extensions="${extensions//,\./,}"; extensions="${extensions#.}"
      pattern="${pattern//%3A/:}"; pattern="${pattern//%25/%}"
      insertion_prefix="${insertion_prefix//%3A/:}"; insertion_prefix="${insertion_prefix//%25/%}"
      local __reply_start=${#COMPREPLY[@]}

      # Inserted keys are not filesystem paths.  Match only the value part,
      # then restore the key once the file candidates have been filtered.
      if [[ -n "$insertion_prefix" ]] &&
          [ "${pattern:0:${#insertion_prefix}}" = "$insertion_prefix" ] &&
          [ "${__file_current:0:${#insertion_prefix}}" = "$insertion_prefix" ]; then
        pattern="${pattern:${#insertion_prefix}}"
        __file_current="${__file_current:${#insertion_prefix}}"
        if [ "${__raw_file_current:0:${#insertion_prefix}}" = "$insertion_prefix" ]; then
          __raw_file_current="${__raw_file_current:${#insertion_prefix}}"
        fi
      else
        insertion_prefix=""
      fi

      # path() echoes the raw shell word as its pattern.  Once dequoted,
      # use the literal current-word prefix instead of the escaped pattern.
      if [[ "$pattern" == "$__raw_file_current" && "$__file_current" != "$__raw_file_current" ]] ||
          { [[ -n "$__reply_prefix" ]] && [ "$pattern" = "$__file_current" ] &&
            { [[ "$pattern" != *[*?]* ]] || [ "$__raw_file_current" != "$__file_current" ]; }; }; then
        pattern=""
      fi

      # Save and adjust glob/shell options for safe file completion
      local __dotglob_was_set=0 __failglob_was_set=0 __noglob_was_set=0
      local __globignore_was_set=0 __saved_globignore="${GLOBIGNORE-}"
      [[ ${GLOBIGNORE+x} == x ]] && __globignore_was_set=1
      shopt -q dotglob && __dotglob_was_set=1
      shopt -q failglob && __failglob_was_set=1
      [[ $- == *f* ]] && __noglob_was_set=1
      # Unset GLOBIGNORE before enabling dotglob because unsetting
      # GLOBIGNORE implicitly clears dotglob in Bash
      shopt -u failglob 2>/dev/null
      set +f
      unset GLOBIGNORE

      # Expand tilde prefix for file globbing
      local __glob_current="$__file_current" __tilde_prefix="" __tilde_expanded=""
      if [[ $__file_tilde_quoted == 0 && "$__raw_file_current" == "~"* && "$__file_current" =~ $__tilde_pattern ]]; then
        __tilde_prefix="${BASH_REMATCH[1]}"
        eval "__tilde_expanded=$__tilde_prefix" 2>/dev/null || true
        if [[ -n "$__tilde_expanded" && "$__tilde_expanded" != "$__tilde_prefix" ]]; then
          __glob_current="${__tilde_expanded}${__file_current#$__tilde_prefix}"
        else
          __tilde_prefix=""
        fi
      fi

      # When a pattern is specified, use it as the glob base instead of the
      # current word so that completions enumerate the pattern's directory.
      # However, if the user has already typed beyond the pattern (e.g.,
      # pattern="src/" and current="src/ma"), preserve the typed suffix
      # for incremental filtering.
      local __from_pattern=0 __filter_pattern=0 __pattern_prefix=""
      local __pattern_tilde_prefix="" __pattern_tilde_expanded=""
      if [[ -n "$pattern" ]]; then
        # Normalize leading ./ so that ./src/ma matches pattern src/
        local __norm_current="${__file_current#./}"
        local __norm_pattern="${pattern#./}"
        # For wildcard patterns, compare only the directory prefix before
        # any wildcards so that typing src/ma narrows src/*.ts correctly
        local __compare_pattern="$__norm_pattern"
        if [[ "$__compare_pattern" == *[*?]* ]]; then
          __compare_pattern="${__compare_pattern%%[*?]*}"
          [[ "$__compare_pattern" == */* ]] && __compare_pattern="${__compare_pattern%/*}/" || __compare_pattern=""
        fi
        local __extends_pattern=0
        if [[ ( -n "$__compare_pattern" || -n "$__norm_current" ) && ${#__norm_current} -ge ${#__compare_pattern} && "${__norm_current:0:${#__compare_pattern}}" == "$__compare_pattern" && "$__file_current" != "$pattern" ]]; then
          __extends_pattern=1
        fi
        if (( __extends_pattern )) && [[ "$__norm_pattern" != *[*?]* ]]; then
          # User has typed beyond or an equivalent form of the pattern
          true
        else
          # Wildcards keep their file filter while the typed prefix narrows
          # the resulting paths. Save the expanded prefix before using pattern.
          if [[ "$__norm_pattern" == *[*?]* ]]; then
            __filter_pattern=1
            __pattern_prefix="$__glob_current"
            # An unquoted value equal to its wildcard is a complete search
            # pattern, not a literal filename prefix to filter against.
            if [ "$__file_current" = "$pattern" ] && [ "$__raw_file_current" = "$__file_current" ]; then
              __pattern_prefix=""
            fi
            __pattern_tilde_prefix="$__tilde_prefix"
            __pattern_tilde_expanded="$__tilde_expanded"
          fi
          __from_pattern=1
          # Reset tilde state from the current-word expansion so that a
          # non-tilde pattern is not rewritten through stale tilde state
          __tilde_prefix=""
          __tilde_expanded=""
          __glob_current="$pattern"
          if [[ "$pattern" =~ $__tilde_glob_pattern ]]; then
            __tilde_prefix="${BASH_REMATCH[1]}"
            eval "__tilde_expanded=$__tilde_prefix" 2>/dev/null || true
            if [[ -n "$__tilde_expanded" && "$__tilde_expanded" != "$__tilde_prefix" ]]; then
              __glob_current="${__tilde_expanded}${pattern#$__tilde_prefix}"
            else
              __tilde_prefix=""
            fi
          fi
          # If the glob base is a directory without a trailing slash,
          # append one so that the glob enumerates its contents
          if [[ -d "$__glob_current" && "$__glob_current" != */ ]]; then
            __glob_current="$__glob_current/"
          fi
        fi
      fi

      # Enable dotglob when hidden files are requested, or when the user
      # is already navigating inside a hidden directory (e.g., ~/.config/nvim/)
      # This runs after tilde expansion so that paths like ~/.config/ are
      # checked against the expanded path, not the literal ~ string.
      local __inside_hidden_path=0
      local __hidden_directory_pattern='/[.]([^./][^/]*|[.][^/]+)/'
      if [[ "/${__glob_current%/}/" =~ $__hidden_directory_pattern ||
            "/${__pattern_prefix%/}/" =~ $__hidden_directory_pattern ]]; then
        __inside_hidden_path=1
      fi
      # Also check if the current prefix explicitly targets hidden entries
      # (e.g., user typed "." or ".e" to complete .env)
      local __prefix_targets_hidden=0
      local __prefix_base="${__glob_current##*/}"
      if [[ -n "$__pattern_prefix" ]]; then __prefix_base="${__pattern_prefix##*/}"; fi
      [[ "$__prefix_base" == .* ]] && __prefix_targets_hidden=1
      if [[ "$hidden" == "1" || "$__inside_hidden_path" == "1" || "$__prefix_targets_hidden" == "1" ]]; then shopt -s dotglob; fi

      # Pre-expand file candidates.  When the glob base came from the
      # program's pattern and contains wildcard characters (* or ?),
      # expand it as data with shell globbing. Empty IFS avoids splitting paths;
      # NUL records preserve spaces and newlines without requiring mapfile.
      # Shell expansion respects dotglob on older Bash versions as well.
      # Otherwise append * to treat it as a prefix.
      # Only * and ? are wildcard syntax; escape brackets, backslashes, and
      # extended-glob operators so other pattern characters stay literal.
      local -a __candidates=()
      if [[ "$__from_pattern" == "1" && "$__glob_current" == *[*?]* ]]; then
        local __pathname_glob="" __glob_char __glob_index
        for ((__glob_index=0; __glob_index<${#__glob_current}; __glob_index++)); do
          __glob_char="${__glob_current:__glob_index:1}"
          case "$__glob_char" in
            '['|']'|'\'|'('|')'|'|'|'+'|'@'|'!')
              __pathname_glob+="\\$__glob_char" ;;
            *) __pathname_glob+="$__glob_char" ;;
          esac
        done
        [[ "$type" == "directory" ]] && __pathname_glob="${__pathname_glob%/}"
        local __glob_dir="${__pathname_glob%/*}"
        [[ "$__glob_dir" == "$__pathname_glob" ]] && __glob_dir="."
        [[ -z "$__glob_dir" ]] && __glob_dir="/"
        local __navigation_dir="" __basename_glob="${__pathname_glob##*/}"
        # Once an offered directory is entered, keep the basename filter but
        # enumerate there. Only descendants of matching pattern bases qualify.
        if [[ "$__pattern_prefix" == */* ]]; then
          local __typed_dir="${__pattern_prefix%/*}" __base_dir __norm_base __norm_dir
          # Resolve directory ancestry in subshells, preserving the typed spelling
          # for insertion. The trailing slash also preserves newline-ending names.
          if __norm_dir=$(CDPATH= builtin cd -P -- "$__typed_dir" >/dev/null 2>&1 && printf '%s/' "${PWD%/}"); then
            while IFS= read -r -d '' __base_dir; do
              [[ -d "$__base_dir" ]] || continue
              __norm_base=$(CDPATH= builtin cd -P -- "$__base_dir" >/dev/null 2>&1 && printf '%s/' "${PWD%/}") || continue
              if [ "${__norm_dir:0:${#__norm_base}}" = "$__norm_base" ]; then
                __navigation_dir="$__typed_dir"
                break
              fi
            done < <(IFS=; printf '%s\0' $__glob_dir)
          fi
        fi
        local __candidate
        while IFS= read -r -d '' __candidate; do
          if [[ -e "$__candidate" || -L "$__candidate" ]]; then
            [[ -d "$__candidate" ]] && __candidate="${__candidate%/}"
            __candidates+=("$__candidate")
          fi
        done < <(
          IFS=
          if [[ -n "$__navigation_dir" ]]; then
            printf '%s\0' "$__navigation_dir"/$__basename_glob
          else
            printf '%s\0' $__pathname_glob
          fi
        )
        # For file/any modes, also include directories from the base
        # directory for navigation even when the glob itself does not
        # match directory names.  Skip this for directory mode so that
        # the pattern's basename filter is respected.
        if [[ "$type" != "directory" ]]; then
          local __d
          local __directory_pattern="${__glob_dir%/}/*/"
          while IFS= read -r -d '' __d; do
            [[ -d "$__d" ]] || continue
            __d="${__d%/}"
            __candidates+=("$__d")
          done < <(
            IFS=
            if [[ -n "$__navigation_dir" ]]; then
              printf '%s\0' "$__navigation_dir"/*/
            else
              printf '%s\0' $__directory_pattern
            fi
          )
        fi
      else
        __candidates=("$__glob_current"*)
        # Remove no-match sentinel (bash returns the literal pattern).
        # Also check -L for dangling symlinks which are valid candidates.
        if [[ ${#__candidates[@]} -eq 1 && ! -e "${__candidates[0]}" && ! -L "${__candidates[0]}" ]]; then
          __candidates=()
        fi
      fi

      if (( __filter_pattern )); then
        local __nocasematch_was_set=0
        shopt -q nocasematch && __nocasematch_was_set=1
        if shopt -q nocaseglob; then shopt -s nocasematch; else shopt -u nocasematch; fi
        local -a __filtered_candidates=()
        for __candidate in "${__candidates[@]}"; do
          if [[ "$__candidate" == "$__pattern_prefix"* ||
              "${__candidate#./}" == "${__pattern_prefix#./}"* ]]; then
            if [[ "$__pattern_prefix" == ./* && "$__candidate" != ./* ]]; then
              __candidate="./$__candidate"
            elif [[ "$__pattern_prefix" != ./* && "$__pattern_prefix" != . ]]; then
              __candidate="${__candidate#./}"
            fi
            __filtered_candidates+=("$__candidate")
          fi
        done
        if (( __nocasematch_was_set )); then shopt -s nocasematch; else shopt -u nocasematch; fi
        __candidates=("${__filtered_candidates[@]}")
      fi

      # Generate file completions based on type
      case "$type" in
        file)
          # Complete files and directories (directories for navigation)
          if [[ -n "$extensions" ]]; then
            # Files with extension filtering + directories
            local ext_pattern="${extensions//,/|}"
            ext_pattern='\.('"$ext_pattern"')$'
            for item in "${__candidates[@]}"; do
              if [[ -d "$item" ]]; then
                COMPREPLY+=("$item/")
              elif [[ -f "$item" && "$item" =~ $ext_pattern ]]; then
                COMPREPLY+=("$item")
              fi
            done
          else
            # Complete files and directories for navigation
            for item in "${__candidates[@]}"; do
              if [[ -d "$item" ]]; then
                COMPREPLY+=("$item/")
              elif [[ -f "$item" ]]; then
                COMPREPLY+=("$item")
              fi
            done
          fi
          ;;
        directory)
          # Complete directories only
          for dir in "${__candidates[@]}"; do
            [[ -d "$dir" ]] && COMPREPLY+=("$dir/")
          done
          ;;
        any)
          # Complete both files and directories
          if [[ -n "$extensions" ]]; then
            # Files with extension filtering + directories
            # Files with extension filtering
            local ext_pattern="${extensions//,/|}"
            ext_pattern='\.('"$ext_pattern"')$'
            for item in "${__candidates[@]}"; do
              if [[ -d "$item" ]]; then
                COMPREPLY+=("$item/")
              elif [[ ( -e "$item" || -L "$item" ) && "$item" =~ $ext_pattern ]]; then
                COMPREPLY+=("$item")
              fi
            done
          else
            # Complete files and directories, add slash to directories
            for item in "${__candidates[@]}"; do
              if [[ -d "$item" ]]; then
                COMPREPLY+=("$item/")
              # Use -e || -L to include non-regular files (sockets, FIFOs, dangling symlinks)
              elif [[ -e "$item" || -L "$item" ]]; then
                COMPREPLY+=("$item")
              fi
            done
          fi
          ;;
      esac

      # Restore tilde prefix in completion results
      if (( __filter_pattern )); then
        __tilde_prefix="$__pattern_tilde_prefix"
        __tilde_expanded="$__pattern_tilde_expanded"
      fi
      if [[ -n "$__tilde_prefix" &&
            ( -z "$__quote" || $__file_quote_offset -gt 0 ) ]]; then
        local __i
        for __i in "${!COMPREPLY[@]}"; do
          COMPREPLY[$__i]="${COMPREPLY[$__i]/#$__tilde_expanded/$__tilde_prefix}"
        done
      fi

      # Restore glob/shell options
      # Restore GLOBIGNORE before dotglob because assigning GLOBIGNORE
      # implicitly enables dotglob in Bash
      if [[ "$__globignore_was_set" == "1" ]]; then GLOBIGNORE="$__saved_globignore"; fi
      if [[ "$__dotglob_was_set" == "0" ]]; then shopt -u dotglob; else shopt -s dotglob; fi
      if [[ "$__failglob_was_set" == "1" ]]; then shopt -s failglob; fi
      if [[ "$__noglob_was_set" == "1" ]]; then set -f; fi

      # Readline appends directory separators when it receives the full path.
      # Midword quotes still need ours because replies omit the typed prefix.
      if [[ -n "$__quote" && $__file_quote_offset -eq 0 ]]; then
        local __reply_index
        for ((__reply_index=__reply_start; __reply_index<${#COMPREPLY[@]}; __reply_index++)); do
          COMPREPLY[__reply_index]="${COMPREPLY[__reply_index]%/}"
        done
      fi

      # Readline replaces only the text after an open quote.  Remove the
      # already typed prefix so it is not inserted a second time.
      # Joined replies are trimmed once against __remove after restoring option=,
      # and keyed replies once their key has been restored.
      if [[ -n "$__quote" && $__file_quote_offset -gt 0 && -z "$__reply_prefix" && -z "$insertion_prefix" ]]; then
        local __quote_prefix="${__file_current:0:__file_quote_offset}"
        local __reply_index
        for ((__reply_index=__reply_start; __reply_index<${#COMPREPLY[@]}; __reply_index++)); do
          COMPREPLY[__reply_index]="${COMPREPLY[__reply_index]#"$__quote_prefix"}"
        done
      fi

      # Readline expands a leading tilde in a returned filename even when the
      # user did not type one.  Keep such local paths explicitly relative.
      if [[ ( "$__raw_file_current" != "~"* || $__file_tilde_quoted == 1 ) && -z "$__tilde_prefix" ]]; then
        local __reply_index
        for ((__reply_index=__reply_start; __reply_index<${#COMPREPLY[@]}; __reply_index++)); do
          if [[ "${COMPREPLY[__reply_index]}" =~ $__tilde_glob_pattern ]]; then
            COMPREPLY[__reply_index]="./${COMPREPLY[__reply_index]}"
          fi
        done
      fi

      # Bash 5.3 leaves substitutions unescaped inside an open double quote.
      # Earlier versions already escape them during filename processing.
      if [[ "$__quote" == '"' &&
            ( ${BASH_VERSINFO[0]} -gt 5 ||
              ( ${BASH_VERSINFO[0]} -eq 5 && ${BASH_VERSINFO[1]} -ge 3 ) ) &&
            $(type -t compopt) == builtin ]]; then
        local __escaped_reply __escape_index __reply_index
        for ((__reply_index=__reply_start; __reply_index<${#COMPREPLY[@]}; __reply_index++)); do
          __escaped_reply=""
          for ((__escape_index=0; __escape_index<${#COMPREPLY[__reply_index]}; __escape_index++)); do
            __char="${COMPREPLY[__reply_index]:__escape_index:1}"
            __next="${COMPREPLY[__reply_index]:__escape_index+1:1}"
            if [[ "$__char" == '\' &&
                  ( "$__next" == '$' || "$__next" == '`' ) ]]; then
              __escaped_reply+="\\$__char"
            elif [[ "$__char" == '$' || "$__char" == '`' ]]; then
              __escaped_reply+="\\$__char"
            else
              __escaped_reply+="$__char"
            fi
          done
          COMPREPLY[__reply_index]="$__escaped_reply"
        done
      fi

      # Filter out hidden files unless requested
      if [[ "$hidden" != "1" && "$__inside_hidden_path" == "0" && "$__prefix_targets_hidden" == "0" ]]; then
        local filtered=()
        local __name
        for item in "${COMPREPLY[@]}"; do
          __name="${item%/}"; __name="${__name##*/}"
          if [[ "$__name" != .* ]]; then
            filtered+=("$item")
          fi
        done
        COMPREPLY=("${filtered[@]}")
      fi
      if [[ -n "$insertion_prefix" ]]; then
        local __reply_index
        for ((__reply_index=__reply_start; __reply_index<${#COMPREPLY[@]}; __reply_index++)); do
          COMPREPLY[__reply_index]="$insertion_prefix${COMPREPLY[__reply_index]}"
        done
        if [[ -n "$__quote" && $__file_quote_offset -gt 0 && -z "$__reply_prefix" ]]; then
          local __quote_prefix="${__key_current:0:__file_quote_offset}"
          for ((__reply_index=__reply_start; __reply_index<${#COMPREPLY[@]}; __reply_index++)); do
            COMPREPLY[__reply_index]="${COMPREPLY[__reply_index]#"$__quote_prefix"}"
          done
        fi
      fi
      if [[ ${#COMPREPLY[@]} -gt $__reply_start ]]; then __file_mode=1; fi
    else
      # Regular literal completion
      COMPREPLY+=("$line")
    fi
    for __word in "${COMPREPLY[@]}"; do
      __replies+=("$__reply_prefix$__word")
    done
  done
  COMPREPLY=()
  for __word in "${__replies[@]}"; do
    if [[ "${__word:0:${#__remove}}" == "$__remove" ]]; then
      COMPREPLY+=("${__word:${#__remove}}")
    fi
  done
  if (( ${#COMPREPLY[@]} > 1 )) && command -v sort >/dev/null 2>&1; then
    # Sort shell-escaped keys, not filenames: each key occupies one line even
    # when a candidate contains tabs or newlines. Keep the first occurrence's
    # index, then restore the original order without evaluating escaped data.
    # This works without associative arrays or NUL-aware sort on Bash 3.2.
    local -a __unique_replies=()
    local __index __key __last_key=""
    while IFS= read -r __index; do
      __unique_replies+=("${COMPREPLY[__index]}")
    done < <(
      for ((__index=0; __index<${#COMPREPLY[@]}; __index++)); do
        printf '%q\t%d\n' "${COMPREPLY[__index]}" "$__index"
      done |
        LC_ALL=C sort -t $'\t' -k1,1 -k2,2n |
        {
          while IFS=$'\t' read -r __key __index; do
            if [ "$__key" != "$__last_key" ]; then
              printf '%s\n' "$__index"
              __last_key="$__key"
            fi
          done
        } | LC_ALL=C sort -n
    )
    COMPREPLY=("${__unique_replies[@]}")
  fi
  if [[ $__file_mode == 1 && $(type -t compopt) == builtin ]]; then
    compopt -o filenames 2>/dev/null || true
  fi
}

# Bash 3.2 has no compopt: use filename quoting for all candidates there.
if [[ $(type -t compopt) == builtin ]]; then
  complete -F _rpc -- rpc
else
  complete -o filenames -F _rpc -- rpc
fi
    
