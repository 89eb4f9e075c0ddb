"""A real-format data folder for timing `bench` on user data: simulator videos written as H.264 mp4 clips
(160 clips × 125 frames = 20,000 frames, 256 px, 30 fps, a static text overlay as scanners burn in), one folder per
patient, plus a FETAL_PLANES_DB-layout downstream folder (Images/*.png + semicolon CSV) of simulator images.
Usage: python -m tests.perf.real_format_folder OUT (BENCHMARKS.md times README's real-data command on it)."""
import sys
from pathlib import Path

import av
import numpy as np
from PIL import Image

from benchmark.data.simulator.source import SyntheticSource


def main() -> None:
    out = Path(sys.argv[1])
    src = SyntheticSource(resolution=256, subjects=80, videos_per_subject=2, frames_per_video=125,
                          downstream_subjects=60, downstream_images_per_subject=20, workers=1)
    n = 0
    for k in range(80):
        for v in range(2):
            clip = src.video(k, v)
            path = out / "clips" / f"patient{k:03d}" / f"cine{v}.mp4"
            path.parent.mkdir(parents=True, exist_ok=True)
            with av.open(str(path), "w") as container:
                stream = container.add_stream("libx264", rate=30)
                stream.width, stream.height, stream.pix_fmt = 320, 256, "yuv420p"
                for f in clip.frames:
                    rgb = np.zeros((256, 320, 3), np.uint8)
                    rgb[:, 32:288] = f[..., None]
                    rgb[4:12, 4:60] = 255  # burnt-in text block
                    for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                        container.mux(packet)
                for packet in stream.encode():
                    container.mux(packet)
            n += len(clip.frames)
        print(k, n, flush=True)
    names = src.class_names("downstream")
    images = out / "FETAL_PLANES_DB" / "Images"
    images.mkdir(parents=True, exist_ok=True)
    lines = ["Image_name;Patient_num;Plane;Brain_plane;Operator;US_Machine;Train "]
    for k in range(60):
        for j, clip in enumerate(src.labelled_images(k)):
            name = f"Patient{k + 1:05d}_Plane{j}"
            Image.fromarray(clip.frames[0]).save(images / f"{name}.png")
            lines.append(";".join([name, str(k + 1), names[int(clip.labels[0])], "Not A Brain", "Op. 1",
                                   "Voluson E6", "1" if k < 45 else "0"]))
    (out / "FETAL_PLANES_DB" / "FETAL_PLANES_DB_data.csv").write_text("\n".join(lines) + "\n")
    print("frames", n)


if __name__ == "__main__":
    main()
