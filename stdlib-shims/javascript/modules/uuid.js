module.exports = require('uuid');
