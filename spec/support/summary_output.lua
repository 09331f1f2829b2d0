-- busted output handler: busted's plain terminal output, plus the counts
-- written to $TRUEDY_TEST_COUNTS so scripts/run-tests can print the one
-- summary line CI reads ("N passed, N failed") across several runs.
return function(options)
  local busted = require "busted"
  local handler = require("busted.outputHandlers.plainTerminal")(options)
  local subscribe = handler.subscribe

  handler.subscribe = function(self, subscribe_options)
    subscribe(self, subscribe_options)
    busted.subscribe({ "suite", "end" }, function()
      local path = os.getenv("TRUEDY_TEST_COUNTS")
      if path then
        local file = assert(io.open(path, "a"))
        file:write(string.format("%d %d %d\n", handler.successesCount,
          handler.failuresCount + handler.errorsCount, handler.pendingsCount))
        file:close()
      end
      return nil, true
    end)
  end

  return handler
end
