"""sandlot's Python side, one module per concern.

The zygote loads these modules once (src/zygote/python.rs, in the order of its MODULES) and
calls warm_up.prepare(); each child calls run.run(job) exactly once, after its jail is in
place. run() ends by handing its report to the host's finish(), which writes it to the server
and ends the process, so nothing here ever returns to the child's caller.

- imports: the import policy (a clear error, not the boundary: the kernel is)
- output: stdout and stderr of a run
- system_helper: SystemHelper.httpRequest, performed by the server
- convert: a returned value as JSON
- errors: an exception as a run error, with the user's own line and traceback
- figures: matplotlib figures left open, as PNG
- fastgpt: FastGPT's calling convention
- warm_up: what the zygote imports and runs once so that no child reads a file
- run: one job, start to report
"""
