-- Hearth for Neovim (0.7 and later). Put this file in ~/.config/nvim/lua/ and add `require('hearth')`.
-- Code actions (`:lua vim.lsp.buf.code_action()`) then offer Hearth: Explain / Generate /
-- Generate tests / Run tests. Set HEARTH_LSP_TOKEN and add '--server', URL to use a GPU box.
--
-- Suggestions as you type: on Neovim 0.12+ through the built-in inline completion
-- (vim.lsp.inline_completion); on 0.7-0.11 this file shows the server's completion item as ghost
-- text after the cursor. <Tab> accepts it (M.accept_key), typing on ignores it, :HearthSuggest asks
-- for one now. Set M.completion = false before the first buffer opens to turn it off here (the
-- server's lsp.completion.enabled turns it off for every editor).
local M = {}

M.cmd = { 'hearth', 'lsp' }           -- e.g. { '/path/to/.venv/bin/hearth', '--config', '/path/hearth.yaml', 'lsp' }
M.filetypes = { 'python', 'javascript', 'typescript', 'go', 'rust', 'lua', 'sh', 'c', 'cpp', 'java' }
M.completion = true                   -- inline suggestions as you type
M.accept_key = '<Tab>'                -- accepts a visible suggestion (otherwise the key does what it did)
M.debounce_ms = 150                   -- 0.7-0.11: wait this long after a keystroke before asking
local clients = {}                    -- root dir -> client id

local function root_dir(bufnr)
  local file = vim.api.nvim_buf_get_name(bufnr)
  local git = vim.fn.finddir('.git', vim.fn.fnamemodify(file, ':p:h') .. ';')
  if git ~= '' then return vim.fn.fnamemodify(git, ':p:h:h') end
  return vim.fn.getcwd()
end

-- --- ghost text from completion items (Neovim 0.7-0.11) ---------------------------------------
local ns = vim.api.nvim_create_namespace('hearth-suggestion')
local shown = {}                      -- bufnr -> { edit = TextEdit, client = client, tick = changedtick }
local timer = nil

local function hearth_client(bufnr)
  local attached = vim.lsp.get_clients and vim.lsp.get_clients({ bufnr = bufnr }) or vim.lsp.buf_get_clients(bufnr)
  for _, client in pairs(attached) do
    if client.name == 'hearth' then return client end
  end
end

function M.clear(bufnr)
  bufnr = bufnr or vim.api.nvim_get_current_buf()
  shown[bufnr] = nil
  vim.api.nvim_buf_clear_namespace(bufnr, ns, 0, -1)
end

function M.visible(bufnr)
  bufnr = bufnr or vim.api.nvim_get_current_buf()
  local s = shown[bufnr]
  return s ~= nil and s.tick == vim.api.nvim_buf_get_changedtick(bufnr)
end

local function show(bufnr, client, item)
  local edit = item.textEdit
  if not edit or not edit.newText then return end
  local row = edit.range['end'].line
  local line = vim.api.nvim_buf_get_lines(bufnr, row, row + 1, false)[1] or ''
  -- What the item adds after the word already typed: the ghost text.
  local typed = line:sub(edit.range.start.character + 1, edit.range['end'].character)
  local rest = edit.newText:sub(#typed + 1)
  local lines = vim.split(rest, '\n', { plain = true })
  local opts = { virt_text = { { lines[1], 'Comment' } }, hl_mode = 'combine' }
  opts.virt_text_pos = vim.fn.has('nvim-0.10') == 1 and 'inline' or 'eol'
  if #lines > 1 then
    opts.virt_lines = {}
    for i = 2, #lines do table.insert(opts.virt_lines, { { lines[i], 'Comment' } }) end
  end
  M.clear(bufnr)
  vim.api.nvim_buf_set_extmark(bufnr, ns, row, edit.range['end'].character, opts)
  shown[bufnr] = { edit = edit, client = client, tick = vim.api.nvim_buf_get_changedtick(bufnr) }
end

-- Ask the server for a suggestion at the cursor (or at ``position``, 0-based {line, character});
-- ``done(item or nil)`` is called with its answer.
function M.suggest(bufnr, done, position)
  bufnr = bufnr or vim.api.nvim_get_current_buf()
  local client = hearth_client(bufnr)
  if not client then return end
  local params = vim.lsp.util.make_position_params(0, client.offset_encoding)
  if position then params.position = position end
  local tick = vim.api.nvim_buf_get_changedtick(bufnr)
  client.request('textDocument/completion', params, function(err, result)
    local items = result and (result.items or result) or {}
    local item = items[1]
    if err or not item or vim.api.nvim_buf_get_changedtick(bufnr) ~= tick then
      if done then done(nil) end
      return
    end
    show(bufnr, client, item)
    if done then done(item) end
  end, bufnr)
end

-- Insert the visible suggestion (all its lines) and put the cursor after it.
function M.accept(bufnr)
  bufnr = bufnr or vim.api.nvim_get_current_buf()
  if not M.visible(bufnr) then return false end
  local s = shown[bufnr]
  M.clear(bufnr)
  vim.lsp.util.apply_text_edits({ s.edit }, bufnr, s.client.offset_encoding or 'utf-16')
  local lines = vim.split(s.edit.newText, '\n', { plain = true })
  local row = s.edit.range.start.line + #lines
  local col = #lines[#lines] + (#lines == 1 and s.edit.range.start.character or 0)
  pcall(vim.api.nvim_win_set_cursor, 0, { row, col })
  return true
end

local function on_typing(bufnr)
  M.clear(bufnr)
  if timer then timer:stop() end
  timer = timer or vim.loop.new_timer()
  timer:start(M.debounce_ms, 0, vim.schedule_wrap(function()
    if vim.api.nvim_get_mode().mode:sub(1, 1) == 'i' then M.suggest(bufnr) end
  end))
end

local function enable_suggestions(bufnr, client)
  if not M.completion then return end
  if vim.lsp.inline_completion then  -- Neovim 0.12+: the built-in inline completion
    vim.lsp.inline_completion.enable(true, { bufnr = bufnr })
    vim.keymap.set('i', M.accept_key, function()
      if not vim.lsp.inline_completion.get() then return M.accept_key end
    end, { buffer = bufnr, expr = true, replace_keycodes = true })
    return
  end
  local group = vim.api.nvim_create_augroup('hearth-suggest-' .. bufnr, { clear = true })
  vim.api.nvim_create_autocmd({ 'TextChangedI', 'TextChangedP' }, {
    group = group, buffer = bufnr, callback = function() on_typing(bufnr) end,
  })
  vim.api.nvim_create_autocmd({ 'InsertLeave', 'BufLeave' }, {
    group = group, buffer = bufnr, callback = function() M.clear(bufnr) end,
  })
  vim.keymap.set('i', M.accept_key, function()
    if M.visible(bufnr) then
      vim.schedule(function() M.accept(bufnr) end)  -- the buffer cannot change inside an <expr> map
      return ''
    end
    return vim.api.nvim_replace_termcodes(M.accept_key, true, true, true)
  end, { buffer = bufnr, expr = true })
end

function M.attach(bufnr)
  local root = root_dir(bufnr)
  local id = clients[root]
  if id == nil or vim.lsp.get_client_by_id(id) == nil then
    id = vim.lsp.start_client({ name = 'hearth', cmd = M.cmd, root_dir = root })
    clients[root] = id
  end
  if id then
    vim.lsp.buf_attach_client(bufnr, id)
    enable_suggestions(bufnr, vim.lsp.get_client_by_id(id))
  end
end

vim.api.nvim_create_user_command('HearthSuggest', function() M.suggest() end, {})

-- :HearthRunTests! runs the tests and lets Hearth repair failing ones.
vim.api.nvim_create_user_command('HearthRunTests', function(opts)
  local arg = { uri = vim.uri_from_bufnr(0), line = vim.api.nvim_win_get_cursor(0)[1] - 1 }
  if opts.bang then arg.fix = 'tests' end
  vim.lsp.buf.execute_command({ command = 'hearth.runTests', arguments = { arg } })
end, { bang = true })

-- :HearthFixCode runs the tests and lets Hearth rewrite the function under the cursor until they pass.
vim.api.nvim_create_user_command('HearthFixCode', function()
  local arg = { uri = vim.uri_from_bufnr(0), line = vim.api.nvim_win_get_cursor(0)[1] - 1, fix = 'code' }
  vim.lsp.buf.execute_command({ command = 'hearth.runTests', arguments = { arg } })
end, {})

vim.api.nvim_create_user_command('HearthAsk', function(opts)
  vim.lsp.buf.execute_command({ command = 'hearth.ask', arguments = { { question = opts.args } } })
end, { nargs = '+' })

vim.api.nvim_create_autocmd('FileType', {
  pattern = M.filetypes,
  callback = function(args) M.attach(args.buf) end,
})

return M
