"""The peer: the musicnn library itself (original TensorFlow code, MTT_musicnn) tagging files.

Runs inside the throwaway TensorFlow environment `peer.py` sets up (never the project's venv;
it imports nothing of the project). One fix, the one data-sources.md describes: musicnn casts
the mel spectrogram to float16 before `log10(10000 x + 1)`, which overflows to inf on most
real music; here `batch_data` is the library's own code with the log-mel in float32. Each file
goes through `musicnn.extractor.extractor`, as `python -m musicnn.tagger` does.

    TF_USE_LEGACY_KERAS=1 PEER/bin/python scripts/bench/peer_musicnn.py FILE... > figures.json
"""

import json
import sys
import time

import librosa
import numpy as np
from musicnn import configuration as config
from musicnn import extractor


def batch_data(audio_file, n_frames, overlap):
    """musicnn.extractor.batch_data with the log-mel in float32 (no float16 cast)."""
    audio, sr = librosa.load(audio_file, sr=config.SR)
    audio_rep = librosa.feature.melspectrogram(
        y=audio, sr=sr, hop_length=config.FFT_HOP, n_fft=config.FFT_SIZE, n_mels=config.N_MELS
    ).T
    audio_rep = np.log10(10000 * audio_rep.astype(np.float32) + 1)
    last_frame = audio_rep.shape[0] - n_frames + 1
    patches = [audio_rep[t : t + n_frames][None] for t in range(0, last_frame, overlap)]
    batch_data.seconds += len(audio) / sr
    return np.concatenate(patches, axis=0), audio_rep


batch_data.seconds = 0.0


def main() -> None:
    extractor.batch_data = batch_data
    files = sys.argv[1:]
    extractor.extractor(files[0], model="MTT_musicnn", extract_features=False)  # TF warm-up
    batch_data.seconds = 0.0
    started = time.perf_counter()
    top = []
    for path in files:
        taggram, tags = extractor.extractor(path, model="MTT_musicnn", extract_features=False)
        top.append(tags[int(np.argmax(taggram.mean(axis=0)))])
    wall = time.perf_counter() - started
    print(
        json.dumps(
            {
                "files": len(files),
                "audio_s": batch_data.seconds,
                "wall_s": wall,
                "top_tags": top[:5],
            }
        )
    )


if __name__ == "__main__":
    main()
