import type { Operation } from './deviceService.js';
import { NoProfileError } from './mediaService.js';
import { videoSource } from './model.js';
import { el } from './soap.js';
import { textAt, type XmlElement } from './xml.js';

/** The imaging service (ONVIF Imaging 2.x) of the one video source: fixed mid-scale settings. */
const level = 50;

function checkSource(request: XmlElement | undefined, operation: string): void {
  const token = textAt(request, operation, 'VideoSourceToken');
  if (token !== videoSource.token) throw new NoProfileError(`no video source ${JSON.stringify(token ?? '')}`);
}

const range = (name: string) => `<tt:${name}>${el('tt:Min', 0)}${el('tt:Max', 100)}</tt:${name}>`;

export const imagingOperations: Record<string, Operation> = {
  // Elements in the schema's order (ImagingSettings20, ImagingOptions20): strict clients parse by sequence.
  GetImagingSettings: (_model, request) => {
    checkSource(request, 'GetImagingSettings');
    return (
      '<timg:GetImagingSettingsResponse><timg:ImagingSettings>' +
      `${el('tt:Brightness', level)}${el('tt:ColorSaturation', level)}${el('tt:Contrast', level)}` +
      `${el('tt:IrCutFilter', 'AUTO')}${el('tt:Sharpness', level)}` +
      '</timg:ImagingSettings></timg:GetImagingSettingsResponse>'
    );
  },
  GetOptions: (_model, request) => {
    checkSource(request, 'GetOptions');
    const modes = ['ON', 'OFF', 'AUTO'].map((m) => el('tt:IrCutFilterModes', m)).join('');
    return (
      `<timg:GetOptionsResponse><timg:ImagingOptions>${range('Brightness')}${range('ColorSaturation')}` +
      `${range('Contrast')}${modes}${range('Sharpness')}</timg:ImagingOptions></timg:GetOptionsResponse>`
    );
  },
  GetMoveOptions: (_model, request) => {
    checkSource(request, 'GetMoveOptions');
    return '<timg:GetMoveOptionsResponse><timg:MoveOptions/></timg:GetMoveOptionsResponse>';
  },
};
