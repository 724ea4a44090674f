// Node's querystring module, as the npm package that mirrors it.
module.exports = require('querystring-es3');
