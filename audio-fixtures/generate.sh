#!/usr/bin/env bash
# Makes the caller recordings under audio-fixtures/ in the telephone format (8 kHz mono G.711
# mu-law WAV). Callers are synthetic voices of another engine than the bot's: Debian's flite
# (HTS voices slt and awb). espeak-ng's formant voices were tried first and do not survive the
# 8 kHz mu-law line (whisper tiny.en heard "Mepa, channel 1" for "The personal one"); flite's
# do. Real human speech comes from Debian's pocketsphinx-testdata.
# Needs: flite, sox, pocketsphinx-testdata (bash .ci/setup installs them). Deterministic:
# running it again rewrites the same files.
set -euo pipefail
cd "$(dirname "$0")"

say() { # say VOICE OUT.wav "text"
  local tmp; tmp=$(mktemp --suffix=.wav)
  flite -voice "$1" -t "$3" -o "$tmp"
  sox -q "$tmp" -r 8000 -c 1 -e u-law "$2"
  rm -f "$tmp"
  echo "  $2: $3"
}
silence() { sox -q -n -r 8000 -c 1 -e u-law "$2" trim 0 "$1"; }

echo "scenario 1: reservation confirmation (caller: flite slt)"
mkdir -p scenario1
say slt scenario1/01.wav "Confirm my reservation."
say slt scenario1/02.wav "Sure, it's A B C one two three, and the name is John Doe."
say slt scenario1/03.wav "No, that's all. Thanks."

echo "scenario 2: billing with clarification (caller: flite slt)"
mkdir -p scenario2
say slt scenario2/01.wav "What's my bill this month?"
say slt scenario2/02.wav "The personal one."
say slt scenario2/03.wav "No, thank you. Goodbye."

echo "scenario 3: cancellation with fallback (caller: flite awb)"
mkdir -p scenario3
say awb scenario3/01.wav "Can you check my reservation is still on?"
say awb scenario3/02.wav "A B C one two three. John Doe."
say awb scenario3/03.wav "Cancel my reservation for next week."
say awb scenario3/04.wav "No thank you, bye."
# whisper may hear the code inexactly ("Pay BC123"); the bot then reads the booking back first.
say awb scenario3/yes.wav "Yes, that's right."

echo "a stranger's line (caller: flite kal, band-limited like a phone line): whisper writes the code"
echo "as 'a BC123' and the name as 'Dondo', the renderings the engine must resolve"
mkdir -p stranger
say_phone() { # say_phone VOICE OUT.wav "text": like say, through the 300-3400 Hz telephone band
  local tmp; tmp=$(mktemp --suffix=.wav)
  flite -voice "$1" -t "$3" -o "$tmp"
  sox -R -q "$tmp" -r 8000 -c 1 -e u-law "$2" sinc 300-3400
  rm -f "$tmp"
  echo "  $2: $3"
}
say_phone kal stranger/01.wav "Hi, I'd like to confirm my reservation."
say_phone kal stranger/02.wav "Sure, it's A B C one two three, and the name is John Doe."
say_phone kal stranger/03.wav "Yes, that's right."
say_phone kal stranger/04.wav "No, that's all. Thanks, bye."

echo "barge-in: the caller answers while the bot is still listing the accounts"
mkdir -p bargein
say slt bargein/ask.wav "What's my bill this month?"
say slt bargein/answer.wav "The business one."
say slt bargein/bye.wav "No. Goodbye."
# Timeline: 4 s of silence (the greeting plays), the question, then the answer 2.6 s after the question ends (the
# bot's reply starts ~0.6 s after the question, so the caller cuts in ~2 s into it), then
# silence, then goodbye once the bill has been read.
silence 4 bargein/_lead.wav
silence 2.6 bargein/_gap.wav
silence 16 bargein/_wait.wav
sox -q bargein/_lead.wav bargein/ask.wav bargein/_gap.wav bargein/answer.wav bargein/_wait.wav bargein/bye.wav bargein/_lead.wav bargein/track.wav
rm -f bargein/_lead.wav bargein/_gap.wav bargein/_wait.wav
echo "  bargein/track.wav"

echo "transfer: a caller who asks for a person (caller: flite rms)"
mkdir -p transfer
say rms transfer/person.wav "Can I talk to a real person, please?"

echo "talkative caller: the load tool's conversation in long turns (switchboard load --talkative;"
echo "caller: flite rms), so callers can talk 40 % of the time without a decode every second"
mkdir -p talkative
say rms talkative/ask.wav "Hi, good morning. I was going through my paperwork last night, and I wanted to ask what my bill is for this month."
say rms talkative/answer.wav "The business one, please. That's the account we use for the office."
say rms talkative/confirm.wav "Okay, thank you. And while I have you, I'd also like to confirm my reservation for next week."

echo "noise: a line with hiss and clicks, nobody speaking"
mkdir -p noise
sox -q -n -r 8000 -c 1 -e u-law noise/line.wav synth 4 whitenoise vol 0.02
echo "  noise/line.wav"

echo "noise set: what a phone line carries besides the caller (tests/it/voice_check.rs)"
mkdir -p noise/set
tmp=$(mktemp -d)
# Line: mains hum and its harmonic, hiss, and a click every 0.7 s.
sox -R -q -n -r 8000 -c 1 "$tmp/hum.wav" synth 6 sine 60 vol 0.15
sox -R -q -n -r 8000 -c 1 "$tmp/hum3.wav" synth 6 sine 180 vol 0.05
sox -R -q -n -r 8000 -c 1 "$tmp/hiss.wav" synth 6 whitenoise vol 0.03
sox -R -q -n -r 8000 -c 1 "$tmp/click.wav" synth 0.004 square 900 vol 0.6 pad 0 0.696
sox -q "$tmp/click.wav" "$tmp/clicks.wav" repeat 8
sox -R -q -m "$tmp/hum.wav" "$tmp/hum3.wav" "$tmp/hiss.wav" "$tmp/clicks.wav" -c 1 -e u-law noise/set/line.wav trim 0 6
# Babble: four talkers at once (flite kal, awb, rms, slt) across the room, some 25 dB under the
# caller's level.
i=0
for v in kal awb rms slt; do
  i=$((i + 1))
  case $i in
    1) t="The market closed higher today as investors welcomed the latest figures on jobs and prices." ;;
    2) t="I told her we would meet at the station at six, but the train was late again." ;;
    3) t="Could you pass the salt? And did anyone see where I left my keys this morning?" ;;
    4) t="The weather tomorrow will be cloudy with a chance of rain in the afternoon." ;;
  esac
  flite -voice "$v" -t "$t" -o "$tmp/b$i.wav"
  sox -q "$tmp/b$i.wav" -r 8000 "$tmp/b${i}8.wav"
done
sox -R -q -m "$tmp/b18.wav" "$tmp/b28.wav" "$tmp/b38.wav" "$tmp/b48.wav" -e u-law noise/set/babble.wav norm -30
# Music: a plucked-string tune (arpeggios), as hold music or a radio in the room.
n=0
for note in C4 E4 G4 C5 G4 E4 A3 C4 E4 A4 E4 C4 F3 A3 C4 F4; do
  n=$((n + 1))
  sox -R -q -n -r 8000 "$tmp/m$(printf %02d $n).wav" synth 0.3 pluck "$note" vol 0.5
done
sox -q "$tmp"/m*.wav -e u-law noise/set/music.wav
# A television in the room: a newsreader (Festival kal_diphone) with room reverb, through the
# telephone band, some 30 dB under the caller's level.
echo "Good evening. Here is the news. Heavy rain is expected across the region tonight, and drivers are asked to take care on the roads." \
  | text2wave -eval "(voice_kal_diphone)" -o "$tmp/tv.wav"
sox -q "$tmp/tv.wav" -r 8000 -e u-law noise/set/tv.wav reverb 50 sinc 300-3400 norm -32
# Coughs: bursts of band-passed noise with a fast attack and a decay, in twos and threes.
sox -R -q -n -r 8000 "$tmp/c.wav" synth 0.25 pinknoise sinc 300-2500 fade q 0.01 0.25 0.2 norm -12
sox -q -n -r 8000 "$tmp/g.wav" trim 0 0.45
sox -q "$tmp/c.wav" "$tmp/g.wav" "$tmp/c.wav" "$tmp/g.wav" "$tmp/g.wav" "$tmp/c.wav" "$tmp/g.wav" \
  "$tmp/c.wav" "$tmp/g.wav" "$tmp/c.wav" -e u-law noise/set/coughs.wav
rm -rf "$tmp"
echo "  noise/set/: line, babble, music, tv, coughs"

echo "held-out noise set: other sources of the same kinds, made after the voice check's settings"
echo "were chosen and never tuned on (tests/it/virtual_calls.rs reports both sets)"
mkdir -p noise/heldout
tmp=$(mktemp -d)
# Line: 50 Hz mains hum, brown noise and crackle (short bursts at random-looking spacings).
sox -R -q -n -r 8000 -c 1 "$tmp/hum.wav" synth 6 sine 50 vol 0.12
sox -R -q -n -r 8000 -c 1 "$tmp/brown.wav" synth 6 brownnoise vol 0.08
sox -R -q -n -r 8000 -c 1 "$tmp/k1.wav" synth 0.01 whitenoise vol 0.5 pad 0 0.33
sox -R -q -n -r 8000 -c 1 "$tmp/k2.wav" synth 0.006 whitenoise vol 0.4 pad 0 0.51
sox -q "$tmp/k1.wav" "$tmp/k2.wav" "$tmp/k1.wav" "$tmp/k2.wav" "$tmp/k1.wav" "$tmp/k2.wav" "$tmp/k1.wav" "$tmp/crackle.wav" repeat 1
sox -R -q -m "$tmp/hum.wav" "$tmp/brown.wav" "$tmp/crackle.wav" -c 1 -e u-law noise/heldout/line.wav trim 0 6
# Babble: Festival's kal and ked diphone voices and flite's slt and kal16 saying other things,
# across the room (some 25 dB under the caller, as in the first set).
echo "Did you hear what happened at the office party last Friday? Nobody expected that." | text2wave -eval "(voice_kal_diphone)" -o "$tmp/h1.wav"
echo "We should book the tickets early, the prices always go up in the summer." | text2wave -eval "(voice_ked_diphone)" -o "$tmp/h2.wav"
flite -voice slt -t "My sister moved to the coast last year and she loves it there." -o "$tmp/h3.wav"
flite -voice kal16 -t "Turn left at the lights, then it is the second building on the right." -o "$tmp/h4.wav"
for i in 1 2 3 4; do sox -q "$tmp/h$i.wav" -r 8000 -c 1 "$tmp/h${i}8.wav"; done
sox -R -q -m "$tmp/h18.wav" "$tmp/h28.wav" "$tmp/h38.wav" "$tmp/h48.wav" -e u-law noise/heldout/babble.wav norm -30
# Music: square-wave chords over a noise-burst beat.
n=0
for chord in "C4 E4 G4" "A3 C4 E4" "F3 A3 C4" "G3 B3 D4" "C4 E4 G4" "A3 C4 E4" "F3 A3 C4" "G3 B3 D4"; do
  n=$((n + 1))
  set -- $chord
  sox -R -q -n -r 8000 -c 1 "$tmp/a.wav" synth 0.5 square "$1" vol 0.15
  sox -R -q -n -r 8000 -c 1 "$tmp/b.wav" synth 0.5 square "$2" vol 0.15
  sox -R -q -n -r 8000 -c 1 "$tmp/c.wav" synth 0.5 square "$3" vol 0.15
  sox -R -q -n -r 8000 -c 1 "$tmp/d.wav" synth 0.06 pinknoise vol 0.5 pad 0 0.44
  sox -R -q -m "$tmp/a.wav" "$tmp/b.wav" "$tmp/c.wav" "$tmp/d.wav" "$tmp/ch$(printf %02d $n).wav"
done
sox -q "$tmp"/ch*.wav -e u-law noise/heldout/music.wav
# A television: a weather forecast (flite rms) with room reverb, ~30 dB under the caller.
flite -voice rms -t "And now the weather. Tomorrow starts cloudy, with showers moving in from the west by the afternoon, and a cold night to follow." -o "$tmp/tv.wav"
sox -q "$tmp/tv.wav" -r 8000 -c 1 -e u-law noise/heldout/tv.wav reverb 70 sinc 300-3400 norm -32
# Coughs and a sneeze: low-passed bursts of other lengths, and a long bright one.
sox -R -q -n -r 8000 -c 1 "$tmp/c1.wav" synth 0.18 brownnoise sinc 200-1800 fade q 0.005 0.18 0.15 norm -10
sox -R -q -n -r 8000 -c 1 "$tmp/sn.wav" synth 0.5 whitenoise sinc 1000-3400 fade q 0.02 0.5 0.4 norm -14
sox -q -n -r 8000 -c 1 "$tmp/g.wav" trim 0 0.6
sox -q "$tmp/c1.wav" "$tmp/g.wav" "$tmp/c1.wav" "$tmp/c1.wav" "$tmp/g.wav" "$tmp/g.wav" "$tmp/sn.wav" \
  "$tmp/g.wav" "$tmp/c1.wav" -e u-law noise/heldout/coughs.wav
rm -rf "$tmp"
echo "  noise/heldout/: line, babble, music, tv, coughs"

echo "real human speech (pocketsphinx-testdata), through the telephone format"
src=/usr/share/pocketsphinx/test/data
mkdir -p real
sox -q -t raw -r 16000 -e signed -b 16 -c 1 "$src/goforward.raw" -r 8000 -e u-law real/goforward.wav
printf 'goforward\tgo forward ten meters\n' > real/transcripts.tsv
for id in sense_and_sensibility_01_austen_64kb-0880 sense_and_sensibility_01_austen_64kb-0930; do
  sox -q "$src/librivox/$id.wav" -r 8000 -c 1 -e u-law "real/$id.wav"
  text=$(grep "($id)" "$src/librivox/transcription" | sed -e 's/<s>//; s/<\/s>.*//; s/^ *//; s/ *$//')
  printf '%s\t%s\n' "$id" "$text" >> real/transcripts.tsv
done
echo "  real/: $(wc -l < real/transcripts.tsv) clips"
