"""Load testing for helios-mock: Locust sessions over the real wire (locustfile.py, agent.py), the capacity
benchmark (bench.py), and the shared pieces: one measured session (session.py) and cheap video reception
with the late-frame rules (video.py). See the "Load testing" section of the README.
"""
