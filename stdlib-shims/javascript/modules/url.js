// Node's url module, as the npm package that mirrors it (the slash skips Node's built-in).
module.exports = require('url/');
