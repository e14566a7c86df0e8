"""Serving live recognition over WebSockets (``streamer serve``).

`streamer.serve.protocol` is the wire protocol (pure data, no sockets; docs/protocol.md);
`streamer.serve.server` the asyncio server around one shared `streamer.Recognizer`. The server needs
the optional ``websockets`` package (``pip install 'streamer[serve]'``); the protocol module does not.
"""
