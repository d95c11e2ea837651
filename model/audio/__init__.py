"""Audio input shared by the service, the command line and training: recognise a container from
its first bytes (`sniff`), then decode it to the model's mono waveform (`decode`).

It lives in `model` because all three packages need it and `model` is the one they all may
import; it imports nothing else of ours.
"""
