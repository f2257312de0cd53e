"""A tiny folder of real-format recordings for `imu_video_folder`: wrist acc + gyro csv at 50 Hz with frame-folder
video, two activities, subjects p1-p3 in train and p4 in test."""

import json
import os

import numpy as np
from PIL import Image

RATE_HZ = 50
SECONDS = 4
CLASSES = ("walk", "sit")
CHANNELS = ("wrist/acc_x", "wrist/acc_y", "wrist/acc_z", "wrist/gyro_x", "wrist/gyro_y", "wrist/gyro_z")


def write(root: str, subjects=("p1", "p2", "p3", "p4"), test_subjects=("p4",), frames_fps=8) -> str:
    rng = np.random.default_rng(0)
    os.makedirs(root, exist_ok=True)
    t = np.arange(RATE_HZ * SECONDS) / RATE_HZ
    recordings = []
    for s, subject in enumerate(subjects):
        for c, label in enumerate(CLASSES):
            name = f"{subject}_{label}"
            amplitude, freq = (3.0, 2.0) if label == "walk" else (0.2, 0.3)
            acc = np.stack([amplitude * np.sin(2 * np.pi * freq * t + k) for k in range(3)], 1) + [0, 0, 9.81]
            gyro = 0.5 * amplitude * np.cos(2 * np.pi * freq * t)[:, None] * np.ones(3)
            imu = np.concatenate([acc, gyro], 1) + 0.05 * (s + 1) * rng.normal(size=(len(t), 6))
            with open(os.path.join(root, f"{name}.csv"), "w") as f:
                f.write("ax,ay,az,gx,gy,gz\n")
                f.writelines(",".join(f"{v:.5f}" for v in row) + "\n" for row in imu)
            frames = os.path.join(root, f"{name}_frames")
            os.makedirs(frames, exist_ok=True)
            for i in range(SECONDS * frames_fps):
                shade = int(120 + 100 * np.sin(i * (1.0 if label == "walk" else 0.1)))
                Image.new("RGB", (16, 16), (shade, 60 * c, 40 * s)).save(os.path.join(frames, f"{i:04d}.png"))
            recordings.append({"imu": f"{name}.csv", "video": f"{name}_frames/", "label": label,
                               "subject": subject, "split": "test" if subject in test_subjects else "train"})
    manifest = {"rate_hz": RATE_HZ, "channels": list(CHANNELS), "units": {"acc": "m/s2", "gyro": "rad/s"},
                "csv_columns": ["ax", "ay", "az", "gx", "gy", "gz"], "frames_fps": frames_fps,
                "classes": list(CLASSES), "recordings": recordings}
    with open(os.path.join(root, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
    return root
