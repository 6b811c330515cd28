-- Mix "segments": GET of a whole 2 MiB segment, a random one of N per request.
-- Arguments: N PATH_FORMAT SIZE   e.g. 200 /bench/hls/720p/seg_%05d.ts 2097152
local n, fmt, size

function mix_init(args)
  n = tonumber(args[1])
  fmt = args[2]
  size = tonumber(args[3])
end

function mix_request()
  return string.format(fmt, math.random(1, n)), nil
end

function mix_check(status, headers, body)
  if status ~= 200 then return false, "status " .. status end
  if #body ~= size then return false, "length " .. #body end
  return true
end

dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")
