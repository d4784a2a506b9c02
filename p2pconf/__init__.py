"""p2pconf: peer-to-peer browser video conferences with a small signaling server."""

__version__ = "0.1.0"
