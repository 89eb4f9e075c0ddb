"""Read one input file (video, image, DICOM, HDF5 dataset) into a cache-ready `Clip`.

These functions run inside the worker processes of `parallel.decode_all`; they raise on a bad
file and `parallel` turns the exception into a `Skipped` item with the reason.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from benchmark.data.source import Clip
from benchmark.data.sources.files import DICOM_EXTENSIONS, IMAGE_EXTENSIONS, VIDEO_EXTENSIONS
from benchmark.data.sources.pixels import prepare_frames, to_gray, to_uint8

READERS = ("video", "image", "dicom", "hdf5")


@dataclass(frozen=True)
class FileTask:
    """What a worker needs to turn one file into a Clip (picklable)."""

    path: str  # absolute path of the file
    video_id: str
    subject_id: str
    resolution: int
    crop: str
    reader: str  # one of READERS
    stride: int = 1
    max_frames: int | None = None
    label: int | None = None
    split: str | None = None
    key: str | None = None  # the dataset inside an HDF5 file
    # DICOM: use the file's PatientID as subject when it has one (subject_id is then the fallback).
    subject_from_patient_id: bool = False
    # Whether subject_id names a subject (False: it is the file itself); a PatientID found makes it True.
    subject_known: bool = True
    scanner: str = ""  # the machine that acquired it, where the source knows it


def kept_indices(n_frames: int, stride: int, max_frames: int | None) -> np.ndarray:
    """The frame numbers a clip of `n_frames` keeps: every `stride`-th, at most `max_frames`."""
    idx = np.arange(0, n_frames, stride)
    return idx[:max_frames] if max_frames else idx


def reader_for(path: str) -> str:
    """Pick the reader from a file's extension (files without one are tried as DICOM)."""
    ext = Path(path).suffix.lower()
    if ext in VIDEO_EXTENSIONS:
        return "video"
    if ext in IMAGE_EXTENSIONS:
        return "image"
    if ext in DICOM_EXTENSIONS or ext == "":
        return "dicom"
    raise ValueError(f"unsupported file type {ext!r}: expected a video ({', '.join(VIDEO_EXTENSIONS)}), "
                     f"an image ({', '.join(IMAGE_EXTENSIONS)}) or DICOM ({', '.join(DICOM_EXTENSIONS)})")


# 8-bit planar YUV: the gray image is the Y plane. Limited-range ("MPEG") luma spans 16-235; this
# table stretches it to 0-255 exactly as FFmpeg's own gray conversion does.
_YUV8 = {"yuv420p", "yuvj420p", "yuv422p", "yuvj422p", "yuv444p", "yuvj444p", "yuv440p", "yuvj440p",
         "yuv411p", "yuvj411p", "yuv410p", "nv12", "nv21", "nv16", "gray"}
_LIMITED_TO_FULL = np.clip(np.round((np.arange(256) - 16) * 255 / 219), 0, 255).astype(np.uint8)
_FULL_RANGE = 2  # AVCOL_RANGE_JPEG


def video_frame_to_gray(frame) -> np.ndarray:
    """An av.VideoFrame as H×W uint8 luma. Reads the Y plane directly where it can: FFmpeg's generic
    conversion (`to_ndarray(format="gray")`) costs ~3× the decode itself on small frames."""
    name = frame.format.name
    if name not in _YUV8:
        return frame.to_ndarray(format="gray")
    plane = frame.planes[0]
    y = np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)[:, :frame.width]
    if name == "gray" or name.startswith("yuvj") or frame.color_range == _FULL_RANGE:
        return y.copy()
    return np.take(_LIMITED_TO_FULL, y)


def read_video(path: str, stride: int = 1, max_frames: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Decode every `stride`-th frame (at most `max_frames`) of a video as gray T×H×W uint8."""
    import av

    frames, kept = [], []
    with av.open(path) as container:
        if not container.streams.video:
            raise ValueError("the file has no video stream")
        stream = container.streams.video[0]
        for i, frame in enumerate(container.decode(stream)):
            if i % stride:
                continue  # inter-coded frames must be decoded anyway; only the conversion is skipped
            frames.append(video_frame_to_gray(frame))
            kept.append(i)
            if max_frames and len(frames) >= max_frames:
                break
    if not frames:
        raise ValueError("no video frames could be decoded (empty or truncated file)")
    if len({f.shape for f in frames}) > 1:
        raise ValueError("the frame size changes within the video")
    return np.stack(frames), np.asarray(kept)


def read_image(path: str | BinaryIO) -> tuple[np.ndarray, np.ndarray]:
    """One image file or encoded bytes (any mode Pillow reads; 16-bit and float stretched to 8 bits)
    as 1×H×W uint8."""
    from PIL import Image

    with Image.open(path) as img:
        img.load()  # decode now, so a truncated file fails here with its reason
        if img.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
            arr = to_uint8(np.asarray(img))
        else:
            arr = np.asarray(img.convert("L"))
    return arr[None], np.zeros(1, np.int64)


def read_dicom(path: str, stride: int = 1, max_frames: int | None = None
               ) -> tuple[np.ndarray, np.ndarray, str]:
    """A DICOM file (single frame or multi-frame cine, any transfer syntax pydicom's pixel plugins
    decode: native, RLE, JPEG baseline/lossless, JPEG-LS, JPEG 2000) as gray T×H×W uint8, plus its
    PatientID ("" when absent)."""
    import pydicom
    from pydicom.pixels import apply_color_lut, iter_pixels

    ds = pydicom.dcmread(path)
    if not any(tag in ds for tag in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
        sop = ds.get("SOPClassUID")
        raise ValueError("the DICOM file has no pixel data"
                         + (f" (SOP class: {sop.name})" if sop is not None else ""))
    n = int(ds.get("NumberOfFrames", 1) or 1)
    keep = kept_indices(n, stride, max_frames)
    arr = np.stack(list(iter_pixels(ds, indices=[int(i) for i in keep])))
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip()
    if photometric == "PALETTE COLOR":
        # pydicom gives the palette's 16-bit entries (8-bit palettes scaled by 256): their top byte is the
        # 8-bit colour, where stretching over the image's own range would brighten a dark image.
        arr = apply_color_lut(arr, ds)
        if arr.dtype == np.uint16:
            arr = (arr >> 8).astype(np.uint8)
    color = arr.ndim == 4
    gray = to_gray(arr, channels_last=color)
    if photometric == "MONOCHROME1":
        gray = 255 - gray  # MONOCHROME1 stores white as the lowest value
    return gray, keep, str(ds.get("PatientID", "") or "").strip()


def read_hdf5(path: str, key: str, stride: int = 1, max_frames: int | None = None
              ) -> tuple[np.ndarray, np.ndarray]:
    """One dataset of an HDF5 file: T×H×W, T×H×W×C (C in 1, 3, 4) or a single H×W frame."""
    import h5py

    with h5py.File(path, "r") as f:
        dset = f[key]
        if dset.ndim == 2:
            return to_gray(dset[()][None], channels_last=False), np.zeros(1, np.int64)
        if dset.ndim not in (3, 4) or (dset.ndim == 4 and dset.shape[-1] not in (1, 3, 4)):
            raise ValueError(f"dataset of shape {dset.shape}: expected T×H×W or T×H×W×C with C in 1, 3, 4")
        keep = kept_indices(dset.shape[0], stride, max_frames)
        if len(keep) == 0:
            raise ValueError("the dataset has no frames")
        data = dset[int(keep[0]):int(keep[-1]) + 1:stride]  # a strided slice reads only the kept frames
    return to_gray(data, channels_last=data.ndim == 4), keep


def decode_file(task: FileTask) -> Clip:
    """Worker entry point: read, crop, resize, label."""
    subject, known = task.subject_id, task.subject_known
    if task.reader == "video":
        raw, idx = read_video(task.path, task.stride, task.max_frames)
    elif task.reader == "image":
        raw, idx = read_image(task.path)
    elif task.reader == "dicom":
        raw, idx, patient_id = read_dicom(task.path, task.stride, task.max_frames)
        if task.subject_from_patient_id and patient_id:
            subject, known = patient_id, True
    elif task.reader == "hdf5":
        raw, idx = read_hdf5(task.path, task.key or "", task.stride, task.max_frames)
    else:
        raise ValueError(f"unknown reader {task.reader!r}")
    frames = prepare_frames(raw, task.crop, task.resolution)
    labels = None if task.label is None else np.full(len(frames), task.label, np.int64)
    path = f"{task.path}:{task.key}" if task.key else task.path
    return Clip(frames=frames, video_id=task.video_id, subject_id=subject, labels=labels,
                split=task.split, frame_idx=idx, path=path, subject_known=known,
                scanner=task.scanner)
