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
import inspect
import json
import os
import signal
import sys
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


def encode(reply):
    text = json.dumps(reply, allow_nan=False, default=to_json, separators=(",", ":"))
    return (text + "\n").encode("ascii")


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


def handle(line, emit):
    request = {}
    function_name = "the procedure"
    try:
        parsed = json.loads(line)
        if not isinstance(parsed, dict):
            raise ValueError("a request must be an object")
        request = parsed
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
    requests = os.fdopen(os.dup(0), "rb")
    replies = os.fdopen(os.dup(1), "wb")
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    os.dup2(2, 1)
    sys.stdin = open(os.devnull, "r")
    sys.stdout = sys.stderr
    sys.dont_write_bytecode = True
    if sys.path and sys.path[0] == "":
        del sys.path[0]

    def emit(data):
        replies.write(data)
        replies.flush()

    try:
        confine(json.loads(sys.argv[1]) if len(sys.argv) > 1 else {})
    except BaseException as error:
        emit(encode({"id": 0, "ok": False, "error": describe(error)}))
        sys.exit(1)
    emit(encode({"id": 0, "ok": True, "result": "ready"}))
    try:
        # The server decides when interpreters stop, whoever else sends Ctrl-C.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    except (AttributeError, ValueError):
        pass
    for line in requests:
        if not line.strip():
            continue
        try:
            emit(handle(line, emit))
        except OSError:
            return


main()
`;
