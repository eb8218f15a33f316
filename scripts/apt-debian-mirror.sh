#!/usr/bin/env bash
# Prints the first Debian archive this machine's own apt sources name, for
# fetching packages of another Debian release from the same place. Reads
# one-line sources.list files and deb822 *.sources files alike; an entry
# counts when it is a `deb` entry (not disabled) with component `main` and a
# Debian suite (a codename or stable/testing/unstable, maybe -updates or
# -backports; a -security archive carries only security updates). Whatever
# the host or path: no mirror is assumed. Exits 1, saying why, when none.
#   scripts/apt-debian-mirror.sh [APT_DIR]      (default /etc/apt)
set -euo pipefail

dir=${1:-/etc/apt}
files=()
[ -f "$dir/sources.list" ] && files+=("$dir/sources.list")
for f in "$dir"/sources.list.d/*.list "$dir"/sources.list.d/*.sources; do
  [ -f "$f" ] && files+=("$f")
done

mirror=
if [ "${#files[@]}" -gt 0 ]; then
  mirror=$(awk '
    function debian_suite(s) {
      sub(/-(updates|backports|proposed-updates)$/, "", s)
      return s ~ /^(buster|bullseye|bookworm|trixie|forky|duke|sid|oldoldstable|oldstable|stable|testing|unstable)$/
    }
    function has(list, pred, word,   n, a, i) {
      n = split(list, a, /[ \t]+/)
      for (i = 1; i <= n; i++) {
        if (pred == "suite" && debian_suite(a[i])) return 1
        if (pred == "word" && a[i] == word) return 1
      }
      return 0
    }
    function found(uri) { sub(/\/+$/, "", uri); print uri; done = 1; exit }
    function stanza_end() {
      if (has(types, "word", "deb") && tolower(enabled) != "no" && uri != "" &&
          has(comps, "word", "main") && has(suites, "suite")) found(uri)
      types = uri = suites = comps = enabled = ""
    }
    FNR == 1 { if (deb822) stanza_end(); deb822 = FILENAME ~ /\.sources$/ }
    deb822 {
      if ($0 ~ /^[ \t]*$/) { stanza_end(); next }
      if ($0 ~ /^#/ || $0 ~ /^[ \t]/) next
      key = tolower($1); sub(/:$/, "", key)
      val = $0; sub(/^[^:]*:[ \t]*/, "", val)
      if (key == "types") types = val
      else if (key == "uris") { split(val, u, /[ \t]+/); uri = u[1] }
      else if (key == "suites") suites = val
      else if (key == "components") comps = val
      else if (key == "enabled") enabled = val
      next
    }
    $1 == "deb" {
      line = $0; sub(/#.*/, "", line); sub(/\[[^]]*\]/, "", line)
      n = split(line, a, /[ \t]+/)
      # a[1] is "deb" (or empty when the line is indented)
      i = (a[1] == "deb") ? 2 : 3
      comps = ""
      for (j = i + 2; j <= n; j++) comps = comps " " a[j]
      if (has(comps, "word", "main") && debian_suite(a[i + 1])) found(a[i])
    }
    END { if (!done && deb822) stanza_end() }
  ' "${files[@]}")
fi

if [ -z "$mirror" ]; then
  echo "apt-debian-mirror: no Debian archive in this machine's apt sources" \
       "($dir/sources.list, $dir/sources.list.d/*.list, *.sources): need a deb entry with" \
       "a Debian suite and component main." >&2
  exit 1
fi
echo "$mirror"
