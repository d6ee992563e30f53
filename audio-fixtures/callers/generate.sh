#!/usr/bin/env bash
# Speaks the caller utterances of utterances.tsv into OUT_DIR/<id>.wav in the telephone format
# (8 kHz mono G.711 mu-law WAV), to measure whether the bot understands callers it was never
# tuned on: voices of other engines than the bot's (flite and festival, not espeak-ng), at other
# speeds and pitches, some over a noisy line. The audio is not committed; the transcripts
# (utterances.tsv, with the expected intent and slots) are.
#
# Per row: synthesise TEXT with VOICE (flite:NAME or festival:NAME) -> sox pitch (cents) and tempo
# -> speech peak at -6 dBFS with a little lead/trail silence -> when NOISE is a level, pink line
# noise at that RMS dBFS within the phone band (noisy rows with an even id number also get a 60 Hz
# mains buzz 6 dB below the hiss) -> telephone band (300-3400 Hz) -> 8 kHz mono mu-law.
# Ranges, chosen before any tuning so that the voices stay voices: pitch within +-150 cents and
# tempo 0.9-1.12 (sox's pitch shift much beyond that sounds like no human caller), line noise at
# -50..-38 dBFS RMS against speech peaking at -6 dBFS (roughly 18-30 dB SNR: a noisy but ordinary
# phone line). A first draft at +-300 cents and 10-22 dB SNR with a loud buzz was unintelligible
# to a listener model on half its clips (word error rate 44 % clean, 75 % noisy).
# Deterministic: sox runs in repeatable mode (-R), so the same row gives the same file. A row
# whose wav is already there from the same row (OUT_DIR/.rows/<id>) is skipped; FORCE=1 redoes all.
#
# utterances.tsv: id, split (dev | heldout: never tune on heldout), template, caller (the line's
# caller id; user_000 = unknown line), context (earlier caller turns, " | "-separated), text (what
# the voice says), intent, slots (expected, key=value;...; description= and service= are keywords
# the extracted value should contain; timeframe= is a date or FROM..TO), voice, tempo, pitch, noise.
# "Today" is Monday 2025-11-24.
#
# Usage: generate.sh OUT_DIR [ID...]     (IDs limit the run to those rows)
# Needs: flite, festival (+ voices festvox-us-slt-hts, festvox-kallpc16k, festvox-kdlpc16k), sox;
# installs the missing Debian packages itself when run as root.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
tsv="$here/utterances.tsv"
out=${1:?usage: generate.sh OUT_DIR [ID...]}
shift
only=" $* "

# --- tools ---------------------------------------------------------------------------------
missing=()
command -v flite >/dev/null || missing+=(flite)
command -v sox >/dev/null || missing+=(sox)
command -v text2wave >/dev/null || missing+=(festival)
[ -d /usr/share/festival/voices/us/cmu_us_slt_arctic_hts ] || missing+=(festvox-us-slt-hts)
[ -d /usr/share/festival/voices/english/kal_diphone ] || missing+=(festvox-kallpc16k)
[ -d /usr/share/festival/voices/english/ked_diphone ] || missing+=(festvox-kdlpc16k)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing missing Debian packages: ${missing[*]}"
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
  else
    echo "missing: ${missing[*]} (run as root to install them, or: apt-get install ${missing[*]})" >&2
    exit 1
  fi
fi

mkdir -p "$out/.rows"
out=$(cd "$out" && pwd)
cp "$tsv" "$out/utterances.tsv"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# synth VOICE TEXT OUT.wav
synth() {
  local engine=${1%%:*} name=${1#*:}
  case $engine in
    flite) flite -voice "$name" -t "$2" -o "$3" ;;
    festival) printf '%s\n' "$2" | text2wave -eval "(voice_$name)" -o "$3" ;;
    *) echo "unknown voice engine: $1" >&2; return 1 ;;
  esac
}

rms_db() { sox "$1" -n stats 2>&1 | awk '/^RMS lev dB/ {print $4}'; }

start=$(date +%s)
total=$(($(wc -l < "$tsv") - 1))
n=0 made=0 skipped=0
# Tabs become US (0x1f) so that read keeps empty fields (a tab in IFS would fold them).
while IFS=$'\037' read -r id split template caller context text intent slots voice tempo pitch noise; do
  [ "$id" = id ] && continue
  n=$((n + 1))
  if [ "$only" != "  " ] && [[ $only != *" $id "* ]]; then continue; fi
  row="$id	$text	$voice	$tempo	$pitch	$noise"
  if [ -z "${FORCE:-}" ] && [ -s "$out/$id.wav" ] && [ "$(cat "$out/.rows/$id" 2>/dev/null)" = "$row" ]; then
    skipped=$((skipped + 1))
    continue
  fi
  printf '[%3d/%d] %s %-32s tempo %s pitch %+d noise %-5s %s\n' "$n" "$total" "$id" "$voice" "$tempo" "$pitch" "$noise" "$text"
  synth "$voice" "$text" "$work/raw.wav"
  # Voice change, then 0.35 s before and 0.5 s after the speech, speech peak at -6 dBFS, 16 kHz.
  sox -R -q "$work/raw.wav" -r 16000 -c 1 -b 16 "$work/speech.wav" \
    gain -6 pitch "$pitch" tempo -s "$tempo" rate 16000 pad 0.35 0.5 gain -n -6
  src="$work/speech.wav"
  if [ "$noise" != none ]; then
    dur=$(soxi -D "$work/speech.wav")
    sox -R -q -n -r 16000 -c 1 -b 16 "$work/hiss.wav" synth "$dur" pinknoise gain -6 sinc 300-3400
    gain=$(awk -v want="$noise" -v have="$(rms_db "$work/hiss.wav")" 'BEGIN {printf "%.2f", want - have}')
    sox -R -q "$work/hiss.wav" "$work/noise.wav" gain "$gain"
    num=${id//[!0-9]/}
    if [ $((10#$num % 2)) = 0 ]; then # even ids: a 60 Hz mains buzz, its in-band harmonics near the hiss level
      sox -R -q -n -r 16000 -c 1 -b 16 "$work/hum.wav" synth "$dur" square 60 gain -12 lowpass 700 \
        gain -n "$(awk -v l="$noise" 'BEGIN {print l - 6}')"
      sox -R -q -m -v 1 "$work/noise.wav" -v 1 "$work/hum.wav" "$work/noise2.wav"
      mv "$work/noise2.wav" "$work/noise.wav"
    fi
    sox -R -q -m -v 1 "$work/speech.wav" -v 1 "$work/noise.wav" "$work/mix.wav"
    src="$work/mix.wav"
  fi
  # Telephone band and format.
  sox -R -q "$src" -r 8000 -c 1 -e u-law "$out/$id.wav" sinc 300-3400
  printf '%s' "$row" > "$out/.rows/$id"
  made=$((made + 1))
done < <(tr '\t' '\037' < "$tsv")

secs=$(($(date +%s) - start))
audio=$(for f in "$out"/*.wav; do soxi -D "$f"; done | awk '{s += $1} END {printf "%.1f", s}')
echo "done: $made made, $skipped already there, in ${secs}s; $out holds $(ls "$out"/*.wav | wc -l) clips, ${audio}s of audio"
