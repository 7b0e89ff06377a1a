-- POST /api/v1/randomise with a unique participant and a valid NHS number
-- (modulus 11) for every request; the token from $TOKEN.
local threads = 0
function setup(thread) thread:set("tid", threads); threads = threads + 1 end
local counter = 0
local run = tonumber(os.getenv("RUN") or "0")
local token = os.getenv("TOKEN")
local conditions = {"mental_health", "msk", "both"}
local sites = {"sheffield", "rotherham", "dudley", "birmingham"}
local function nhs(stem)
  while true do
    local s = tostring(stem); local sum = 0
    for k = 1, 9 do sum = sum + tonumber(s:sub(k, k)) * (11 - k) end
    local c = 11 - (sum % 11); if c == 11 then c = 0 end
    if c ~= 10 then return s .. c end
    stem = stem + 1
  end
end
request = function()
  counter = counter + 1
  local i = run * 3000000 + tid * 1000000 + counter
  local body = string.format('{"participant":"W%d","site":"%s","values":{"nhs_number":"%s","age":34,"sex":"female","employment_status":"out_of_work","condition":"%s","referral_source":"gp","weeks_out_of_work":10,"gp_in_area":"yes","wants_work":"yes","receiving_ips":"no","consent":"yes","phq9":12,"gad7":9,"swemwbs":21,"eq5d":0.731}}',
    i, sites[i % 4 + 1], nhs(100000000 + i * 2), conditions[i % 3 + 1])
  return wrk.format("POST", "/api/v1/randomise", {["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. token}, body)
end
