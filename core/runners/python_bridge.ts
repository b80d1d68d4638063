/**
 * The Python side of the Python runner: the bridge script every interpreter
 * runs, kept as text so a compiled binary carries it.
 *
 * @module
 */

/**
 * The bridge each interpreter runs. It is passed with `python3 -c` rather
 * than written to a temporary file: a compiled binary carries it as this
 * string, and there is no file to create, protect or clean up after a crash.
 * (It is a few kilobytes, far below any argument-length limit.) Its one
 * argument is a JSON object of limits, applied before any procedure runs:
 * `oomScoreAdj`, `memoryBytes` (RLIMIT_DATA), and `uid`/`gid` to switch to.
 *
 * Protocol (one JSON object per line):
 *   ← {"id":0,"ok":true,"result":"ready"}     (or "ok":false and why it could not confine itself)
 *   → {"id":1,"op":"load","path":"/abs/x.py","source":"def rpc1(...","function":"rpc1"}
 *   ← {"id":1,"ok":true,"result":true,"loaded":true}   (result: rpc1 is callable)
 *   → {"id":2,"op":"call","path":..,"function":..,"args":[..],"types":["float"]}
 *   ← {"id":2,"ok":true,"result":..} or {"id":2,"ok":false,"error":"ZeroDivisionError: division by zero"}
 *   → {"id":3,"op":"cancel"}                  (call 3 is no longer wanted)
 *   ← {"id":3,"ok":false,"skipped":true}      (only when call 3 had not started)
 *   ← {"id":4,"ok":true,"running":true}       (call 4 has run for a whole tick, 20 ms)
 *
 * The runner pipelines: it may write many requests before the first is
 * answered. The bridge runs them one at a time in the order they came,
 * reading whatever its stdin holds in one read, and answers each in that
 * order (a generator's parts first, `"part":true`). Before it starts a call
 * it reads what else has arrived without blocking, so a cancel of a call
 * still waiting is seen and the call skipped, and then writes everything it
 * has to say in one write. That write is never put off past the start of a
 * call: when an interpreter dies, the replies it got out tell the runner
 * exactly which call could have been running (the first neither answered nor
 * skipped), and that every later one never started. A cancel of a call that
 * has started or ended is ignored. While one call runs longer than a tick, a
 * watch thread reads stdin every tick, so cancels are answered meanwhile, and
 * reports the call once as running long.
 *
 * A request carries `source` when the runner does not know the interpreter
 * to hold the module yet; the reply's `loaded` says whether it does now. The
 * source never needs to be a file the interpreter can open.
 *
 * Requests arrive on a private duplicate of fd 0 and replies leave on a
 * private duplicate of fd 1; fd 0 then reads /dev/null and fd 1 writes to
 * stderr, so nothing a procedure prints, reads or spawns touches the protocol.
 */
export const PYTHON_BRIDGE = String.raw`
import collections
import inspect
import json
import os
import select
import signal
import sys
import threading
import time
import types

modules = {}
loaded_count = 0


def describe(error):
    name = type(error).__name__
    text = str(error)
    return name + ": " + text if text else name


def load(path, source):
    global loaded_count
    module = modules.get(path)
    if module is None:
        if source is None:
            raise ImportError("the source of " + path + " was not sent")
        loaded_count += 1
        name = "rpc_procedure_%d" % loaded_count
        module = types.ModuleType(name)
        module.__file__ = path
        sys.modules[name] = module
        try:
            exec(compile(source, path, "exec"), module.__dict__)
        except BaseException:
            del sys.modules[name]
            raise
        modules[path] = module
    return module


def convert(value, type_name):
    if type_name == "float":
        if isinstance(value, int) and not isinstance(value, bool):
            return float(value)
    elif type_name.startswith("List[") and isinstance(value, list):
        inner = type_name[5:-1]
        return [convert(item, inner) for item in value]
    return value


def to_json(value):
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "__index__"):
        return value.__index__()
    if hasattr(value, "__float__"):
        return float(value)
    raise TypeError("Object of type " + type(value).__name__ + " is not JSON serializable")


# Made once: json.dumps with options builds an encoder per call.
encoder = json.JSONEncoder(allow_nan=False, default=to_json, separators=(",", ":"))


def encode(reply):
    return (encoder.encode(reply) + "\n").encode("ascii")


def run(request, emit):
    function_name = request["function"]
    module = load(request["path"], request.get("source"))
    function = getattr(module, function_name, None)
    if request.get("op") == "load":
        return callable(function)
    if not callable(function):
        raise AttributeError(request["path"] + " does not define a function named " + function_name)
    args = request.get("args") or []
    types_ = request.get("types") or []
    args = [
        convert(arg, types_[i]) if i < len(types_) and "float" in types_[i] else arg
        for i, arg in enumerate(args)
    ]
    result = function(*args)
    if inspect.isgenerator(result):
        # A streaming procedure: each value it yields goes out at once,
        # its return value is the final result.
        generator = result
        while True:
            try:
                value = next(generator)
            except StopIteration as stop:
                result = stop.value
                break
            emit(encode({"id": request["id"], "ok": True, "part": True, "result": value}))
    if hasattr(result, "__await__"):
        import asyncio
        result = asyncio.run(result)
    return result


def parse(line):
    try:
        request = json.loads(line)
    except BaseException as error:  # RecursionError included
        return error
    if not isinstance(request, dict):
        return ValueError("a request must be an object")
    return request


def handle(request, emit):
    function_name = "the procedure"
    if isinstance(request, BaseException):
        return encode({"id": None, "ok": False, "error": describe(request)})
    try:
        function_name = request["function"]
        reply = {"id": request.get("id"), "ok": True, "result": run(request, emit)}
    except BaseException as error:  # SystemExit and KeyboardInterrupt included
        reply = {"id": request.get("id"), "ok": False, "error": describe(error)}
    if "source" in request:
        reply["loaded"] = request.get("path") in modules
    try:
        return encode(reply)
    except BaseException as error:  # NaN, infinity, unserializable objects
        message = function_name + " returned a value that cannot be sent: " + describe(error)
        reply = {"id": request.get("id"), "ok": False, "error": message}
        if "source" in request:
            reply["loaded"] = request.get("path") in modules
        return encode(reply)


class Channel:
    """Requests in, replies out: reads whatever has arrived in one read, writes what is due in one write."""

    def __init__(self, requests, replies):
        self.requests = requests
        self.replies = replies
        os.set_blocking(requests, False)
        self.poller = select.poll()
        self.poller.register(requests, select.POLLIN)
        # The start of a line still arriving, in pieces joined once it ends.
        self.partial = []
        self.pending = collections.deque()
        # The calls that have not started, by id: a cancel takes one out.
        self.waiting = {}
        self.out = []
        self.open = True
        # Held while requests are taken or replies written, by the main thread or the watch.
        self.lock = threading.Lock()
        # How many calls have started, and the one running (None between calls).
        self.started = 0
        self.running = None

    def read(self, block):
        """Takes what stdin holds; with block, waits for something first."""
        # Asking first costs one system call like a read that finds nothing, without its exception.
        if not self.poller.poll(None if block else 0):
            return
        try:
            data = os.read(self.requests, 1 << 16)
        except BlockingIOError:
            return
        if not data:
            self.open = False
            data = b"\n"  # the last line may lack its newline
        if b"\n" not in data:
            self.partial.append(data)
            return
        if self.partial:
            self.partial.append(data)
            data = b"".join(self.partial)
            self.partial = []
        lines = data.split(b"\n")
        tail = lines.pop()
        if tail:
            self.partial.append(tail)
        for line in lines:
            if not line.strip():
                continue
            request = parse(line)
            key = request.get("id") if isinstance(request, dict) else None
            if type(key) is not int:
                self.pending.append(request)
            elif request.get("op") == "cancel":
                if self.waiting.pop(key, None) is not None:
                    self.out.append(encode({"id": key, "ok": False, "skipped": True}))
            else:
                self.waiting[key] = request
                self.pending.append(request)

    def next(self, reply):
        """Hands in the last call's reply, returns the next call to run (None at the end of input)."""
        with self.lock:
            self.running = None
            if reply is not None:
                self.out.append(reply)
            fresh = False
            while True:
                if not self.pending:
                    self.flush()
                    if not self.open:
                        return None
                    self.read(True)
                    fresh = True
                    continue
                if self.open and not fresh:
                    # A cancel sent meanwhile must be seen before the call it names starts.
                    self.read(False)
                request = self.pending.popleft()
                if isinstance(request, dict) and type(request.get("id")) is int:
                    if self.waiting.pop(request["id"], None) is None:
                        continue  # cancelled
                # Nothing is held back past the start of a call: should the call kill
                # the process, the runner knows what ended before it.
                self.flush()
                self.started += 1
                self.running = request
                return request

    def watch(self, tick):
        """
        Runs in a thread of its own: while one call has run for a whole tick,
        takes what stdin holds every tick, so that a cancel of a call queued
        behind it is answered (and the call skipped) without waiting for it,
        and reports the call as running long, once.
        """
        seen = None
        reported = None
        while self.open:
            time.sleep(tick)
            started = self.started
            if self.running is None or started != seen:
                seen = started
                continue
            if not self.lock.acquire(blocking=False):
                continue
            try:
                running = self.running
                if running is not None and self.started == started and self.open:
                    key = running.get("id") if isinstance(running, dict) else None
                    if reported != started and type(key) is int:
                        # The runner queues no more calls behind it, and takes back those that are.
                        reported = started
                        self.out.append(encode({"id": key, "ok": True, "running": True}))
                    self.read(False)
                    self.flush()
            except OSError:
                return
            finally:
                self.lock.release()

    def emit(self, data):
        with self.lock:
            self.out.append(data)
            self.flush()

    def flush(self):
        if not self.out:
            return
        data = b"".join(self.out) if len(self.out) > 1 else self.out[0]
        self.out.clear()
        view = memoryview(data)
        while view:
            view = view[os.write(self.replies, view):]


def confine(limits):
    # In this order: a process may raise its own oom_score_adj and lower its own
    # limits, but once it has switched user it can no longer open its /proc files.
    adjust = "/proc/self/oom_score_adj"
    if limits.get("oomScoreAdj") is not None and os.path.exists(adjust):
        with open(adjust, "w") as file:
            file.write(str(limits["oomScoreAdj"]))
    memory = limits.get("memoryBytes")
    if memory:
        import resource
        _, hard = resource.getrlimit(resource.RLIMIT_DATA)
        if hard != resource.RLIM_INFINITY:
            memory = min(memory, hard)
        resource.setrlimit(resource.RLIMIT_DATA, (memory, memory))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    uid = limits.get("uid")
    if uid is not None:
        gid = limits["gid"]
        os.setgroups([])
        os.setgid(gid)
        os.setuid(uid)
        if os.getresuid() != (uid, uid, uid) or os.getresgid() != (gid, gid, gid):
            raise OSError("the switch to uid %d did not take" % uid)


def main():
    requests = os.dup(0)
    replies = os.dup(1)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    os.dup2(2, 1)
    sys.stdin = open(os.devnull, "r")
    sys.stdout = sys.stderr
    sys.dont_write_bytecode = True
    if sys.path and sys.path[0] == "":
        del sys.path[0]
    channel = Channel(requests, replies)

    try:
        confine(json.loads(sys.argv[1]) if len(sys.argv) > 1 else {})
    except BaseException as error:
        channel.emit(encode({"id": 0, "ok": False, "error": describe(error)}))
        sys.exit(1)
    channel.emit(encode({"id": 0, "ok": True, "result": "ready"}))
    try:
        # The server decides when interpreters stop, whoever else sends Ctrl-C.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    except (AttributeError, ValueError):
        pass
    try:
        # A small stack: it counts against the memory limit, and the watch needs little.
        threading.stack_size(1 << 20)
        threading.Thread(target=channel.watch, args=(0.02,), daemon=True).start()
    except RuntimeError:
        pass  # without it, a cancel is seen between calls only
    finally:
        threading.stack_size(0)
    try:
        reply = None
        while True:
            request = channel.next(reply)
            if request is None:
                return
            reply = handle(request, channel.emit)
    except OSError:
        return


main()
`;
