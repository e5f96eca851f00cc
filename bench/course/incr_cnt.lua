-- Adds ARGV[2] to the field ARGV[1] of the hash KEYS[1], only if the hash exists:
-- an absent hash is a cache miss that the next read fills from MySQL, so creating
-- it here would cache a lone counter beside two missing ones. 1 if applied, else 0.
local key = KEYS[1]
local field = ARGV[1]
local delta = tonumber(ARGV[2])
if redis.call("EXISTS", key) == 1 then
    redis.call("HINCRBY", key, field, delta)
    return 1
end
return 0
