"""llamapy-server: llama-server's HTTP API (OpenAI-compatible) on llamapy's engine.

engine.py holds the slots, the request queue and the scheduler (one decode_step per step for all busy
slots); app.py the FastAPI endpoints and their JSON shapes; schemas.py the request bodies; static/ the web
chat page served at /. The command line is llamapy.cli.cmd_server.
"""
