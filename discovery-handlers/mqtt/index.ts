export { MqttProperty } from './announceWatch.js';
export { type Birth, parseBirth, parseStatus } from './birth.js';
export { discoverMqtt, mqttHandler } from './handler.js';
export { type MqttDetails, MqttDetailsSchema, type MqttDetailsSchemaType, mqttDefaults } from './schema.js';
