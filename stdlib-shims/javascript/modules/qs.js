module.exports = require('qs');
