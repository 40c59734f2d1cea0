"""Shared by the scale benchmarks: run a command in a child process, report its wall time and peak RSS.

``python -c MEASURE '<json argv>'`` prints ``{"wall": seconds, "peak_kb": kilobytes}``; the peak is
the largest resident set of any waited-for child (Linux reports kilobytes), so the measuring
process itself never counts.
"""

MEASURE = '''
import json, resource, subprocess, sys, time
t = time.time()
done = subprocess.run(json.loads(sys.argv[1]), capture_output=True, text=True)
if done.returncode:
    sys.exit(done.stdout + done.stderr)
print(json.dumps({"wall": time.time() - t, "peak_kb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))
'''
