-- Hearth for Neovim (0.7 and later). Put this file in ~/.config/nvim/lua/ and add `require('hearth')`.
-- Code actions (`:lua vim.lsp.buf.code_action()`) then offer Hearth: Explain / Generate /
-- Generate tests / Run tests. Set HEARTH_LSP_TOKEN and add '--server', URL to use a GPU box.
local M = {}

M.cmd = { 'hearth', 'lsp' }           -- e.g. { '/path/to/.venv/bin/hearth', '--config', '/path/hearth.yaml', 'lsp' }
M.filetypes = { 'python', 'javascript', 'typescript', 'go', 'rust', 'lua', 'sh', 'c', 'cpp', 'java' }
local clients = {}                    -- root dir -> client id

local function root_dir(bufnr)
  local file = vim.api.nvim_buf_get_name(bufnr)
  local git = vim.fn.finddir('.git', vim.fn.fnamemodify(file, ':p:h') .. ';')
  if git ~= '' then return vim.fn.fnamemodify(git, ':p:h:h') end
  return vim.fn.getcwd()
end

function M.attach(bufnr)
  local root = root_dir(bufnr)
  local id = clients[root]
  if id == nil or vim.lsp.get_client_by_id(id) == nil then
    id = vim.lsp.start_client({ name = 'hearth', cmd = M.cmd, root_dir = root })
    clients[root] = id
  end
  if id then vim.lsp.buf_attach_client(bufnr, id) end
end

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
