import type { OPCUAServer, UAMethod, UAVariable } from 'node-opcua';
import type { Clock } from '../../src/util/clock.js';
import type { Opcua } from './opcuaModule.js';

/** What the simulated PLC says about itself (read by browse path `/Objects/1:Plant/1:SerialNumber`, ...). */
export interface PlcIdentity {
  serialNumber: string;
  model: string;
}

/** How often the process variables change. */
export const PLANT_TICK_MS = 500;

interface PlantVariables {
  temperature: UAVariable;
  pressure: UAVariable;
  counter: UAVariable;
  setpoint: UAVariable;
}

interface PlantState {
  temperature: number;
  counter: number;
  ticks: number;
}

/**
 * Builds the folder `Plant` in the server's own namespace (index 1): Temperature, Pressure and Counter change
 * every {@link PLANT_TICK_MS}; Setpoint is writable and pulls Temperature towards it; Reset sets Counter to 0.
 * Returns a function that stops the simulation.
 */
export function buildPlant(
  opcua: Opcua,
  server: OPCUAServer,
  identity: PlcIdentity,
  clock: Clock,
): () => void {
  const addressSpace = server.engine.addressSpace;
  if (!addressSpace) throw new Error('the OPC UA server has no address space yet');
  const ns = addressSpace.getOwnNamespace();
  const plant = ns.addFolder(addressSpace.rootFolder.objects, { browseName: 'Plant' });
  const variable = (browseName: string, dataType: 'Double' | 'UInt32' | 'String', value: unknown) =>
    ns.addVariable({
      organizedBy: plant,
      browseName,
      dataType,
      value: { dataType: opcua.DataType[dataType], value },
    });
  variable('SerialNumber', 'String', identity.serialNumber);
  variable('Model', 'String', identity.model);
  const vars: PlantVariables = {
    temperature: variable('Temperature', 'Double', 20),
    pressure: variable('Pressure', 'Double', 1.013),
    counter: variable('Counter', 'UInt32', 0),
    setpoint: ns.addVariable({
      organizedBy: plant,
      browseName: 'Setpoint',
      dataType: 'Double',
      accessLevel: 'CurrentRead | CurrentWrite',
      userAccessLevel: 'CurrentRead | CurrentWrite',
      value: { dataType: opcua.DataType.Double, value: 21 },
    }),
  };
  const state: PlantState = { temperature: 20, counter: 0, ticks: 0 };
  addReset(opcua, ns.addMethod(plant, { browseName: 'Reset' }), state, vars);
  return startTicking(opcua, vars, state, clock);
}

function addReset(opcua: Opcua, method: UAMethod, state: PlantState, vars: PlantVariables): void {
  // node-opcua tells a promise-returning method from a callback one by its arity: two parameters.
  method.bindMethod(async (_inputArguments: unknown, _context: unknown) => {
    state.counter = 0;
    setValue(opcua, vars.counter, 'UInt32', 0);
    return { statusCode: opcua.StatusCodes.Good, outputArguments: [] };
  });
}

function startTicking(opcua: Opcua, vars: PlantVariables, state: PlantState, clock: Clock): () => void {
  let timer: NodeJS.Timeout | undefined;
  const tick = () => {
    state.ticks += 1;
    state.counter += 1;
    const setpoint = Number(vars.setpoint.readValue().value.value ?? 21);
    state.temperature += (setpoint - state.temperature) * 0.1 + Math.sin(state.ticks / 5) * 0.05;
    setValue(opcua, vars.temperature, 'Double', state.temperature);
    setValue(opcua, vars.pressure, 'Double', 1.013 + Math.sin(state.ticks / 7) * 0.01);
    setValue(opcua, vars.counter, 'UInt32', state.counter);
    timer = clock.setTimeout(tick, PLANT_TICK_MS);
  };
  timer = clock.setTimeout(tick, PLANT_TICK_MS);
  return () => {
    if (timer) clock.clearTimeout(timer);
    timer = undefined;
  };
}

function setValue(opcua: Opcua, node: UAVariable, dataType: 'Double' | 'UInt32', value: number): void {
  node.setValueFromSource(new opcua.Variant({ dataType: opcua.DataType[dataType], value }));
}
