-- wrk script: replay pre-signed requests from $BENCH_REQUESTS (one "signature<TAB>body" a line).
local requests = {}
local n = 0
local i = 0
local threads = 0

function setup(thread)
  thread:set("id", threads)
  threads = threads + 1
end

function init(args)
  local path = os.getenv("BENCH_REQUESTS")
  for line in io.lines(path) do
    local tab = line:find("\t", 1, true)
    local sig, body = line:sub(1, tab - 1), line:sub(tab + 1)
    n = n + 1
    requests[n] = wrk.format("POST", os.getenv("BENCH_PATH"), {
      ["Content-Type"] = "application/json",
      ["X-Signature"] = sig,
    }, body)
  end
  -- each wrk thread starts a different half of the file, so threads do not repeat each other
  i = (id or 0) * math.floor(n / 2)
end

function request()
  i = i + 1
  if i > n then i = 1 end
  return requests[i]
end
