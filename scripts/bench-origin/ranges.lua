-- Mix "ranges": GET with `Range: bytes=a-(a+LEN-1)` inside a random one of N segments of SIZE
-- bytes; a is uniform over [0, SIZE-LEN].
-- Arguments: N PATH_FORMAT SIZE LEN   e.g. 200 /bench/hls/720p/seg_%05d.ts 2097152 262144
local n, fmt, size, len

function mix_init(args)
  n = tonumber(args[1])
  fmt = args[2]
  size = tonumber(args[3])
  len = tonumber(args[4])
end

function mix_request()
  local a = math.random(0, size - len)
  return string.format(fmt, math.random(1, n)),
    { ["Range"] = string.format("bytes=%d-%d", a, a + len - 1) }
end

function mix_check(status, headers, body)
  if status ~= 206 then return false, "status " .. status end
  if #body ~= len then return false, "length " .. #body end
  local cr = header(headers, "Content-Range")
  if not cr or not string.match(cr, "^bytes %d+%-%d+/" .. size .. "$") then
    return false, "content-range " .. tostring(cr)
  end
  return true
end

dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")
