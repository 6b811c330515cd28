-- Mix "manifests": GET of a random manifest (HLS master and media playlists, DASH MPD) from a
-- list file of lines "PATH SIZE". No Accept-Encoding: both servers send identity bytes.
-- With a third argument "gzip", requests carry `Accept-Encoding: gzip` (the optional
-- manifests-gzip mix); the check then expects Content-Encoding: gzip.
-- Arguments: LIST_FILE [gzip]
local paths, sizes, gzip = {}, {}, false

function mix_init(args)
  for line in io.lines(args[1]) do
    local p, s = string.match(line, "^(%S+)%s+(%d+)$")
    if p then
      table.insert(paths, p)
      sizes[p] = tonumber(s)
    end
  end
  gzip = args[2] == "gzip"
  assert(#paths > 0, "no manifests in " .. args[1])
end

function mix_request()
  local p = paths[math.random(1, #paths)]
  if gzip then return p, { ["Accept-Encoding"] = "gzip" } end
  return p, nil
end

function mix_check(status, headers, body)
  if status ~= 200 then return false, "status " .. status end
  local ce = header(headers, "Content-Encoding")
  if gzip then
    if ce ~= "gzip" then return false, "content-encoding " .. tostring(ce) end
  else
    if ce then return false, "content-encoding " .. ce end
    local ok = false
    for _, s in pairs(sizes) do
      if #body == s then ok = true end
    end
    if not ok then return false, "length " .. #body end
  end
  return true
end

dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")
